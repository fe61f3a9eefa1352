// The partner's "扫码" on /redeem (redeem.html, issue 16): the camera's frames decoded with jsQR (/vendor/jsQR.js,
// copied from npm by ./dev) until one holds a QR code, whose text goes into the code field; the partner checks it
// and presses "核销" as when the code is typed. No camera, or the camera refused: the button's message says so and
// typing stays the way (the form works without this script). Messages come with the button, in the page's language.
/* global jsQR */
let open = null; // the camera's stream while a scan runs

function stop() {
  open?.getTracks().forEach((track) => track.stop());
  open = null;
}

async function scan(button) {
  const form = button.form;
  const status = form.querySelector("[data-scan-status]");
  const view = form.querySelector("[data-scan-view]");
  stop();
  if (!navigator.mediaDevices?.getUserMedia || typeof jsQR !== "function") {
    status.textContent = button.dataset.noCamera;
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
  } catch (error) {
    status.textContent = error.name === "NotAllowedError" ? button.dataset.denied : button.dataset.noCamera;
    return;
  }
  open = stream;
  status.textContent = button.dataset.looking;
  view.srcObject = stream;
  view.hidden = false;
  await view.play();
  const canvas = document.createElement("canvas");
  const context = canvas.getContext("2d", { willReadFrequently: true });
  const frame = () => {
    if (open !== stream) { // stopped: the page left, or a new scan began
      return;
    }
    if (view.videoWidth) {
      canvas.width = view.videoWidth;
      canvas.height = view.videoHeight;
      context.drawImage(view, 0, 0);
      const pixels = context.getImageData(0, 0, canvas.width, canvas.height);
      const found = jsQR(pixels.data, pixels.width, pixels.height, { inversionAttempts: "dontInvert" });
      if (found?.data) {
        form.elements.code.value = found.data;
        status.textContent = button.dataset.found;
        stop();
        view.hidden = true;
        view.srcObject = null;
        form.querySelector("button[type=submit]").focus();
        return;
      }
    }
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-scan]");
  if (button) {
    event.preventDefault();
    scan(button);
  }
});
addEventListener("pagehide", stop);
