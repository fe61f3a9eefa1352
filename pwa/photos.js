// Photos sized for the field (issue 22 item 2): a photo chosen in a form is decoded, its long side brought down
// and encoded again as JPEG before the form sends or stores it, online and offline alike (the form's file input
// then holds the smaller file). Encoding it again drops all the camera's metadata, EXIF location included: a form
// that asks for a location has its own fields for it (geolocate.js). A photo that cannot be decoded is taken out
// of the input with a message beside it; it is never stored. The rule is the server's (/pwa/photo_fit.json,
// server/domain/field_rules.py PHOTO_FIT), and the server still judges whatever arrives by its bytes.

const RULE_URL = "/pwa/photo_fit.json";

// A file fitted to the rule, or null when it cannot be decoded as an image.
export async function fitPhoto(file, fit) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch {
    return null;
  }
  const scale = Math.min(1, fit.long_side / Math.max(bitmap.width, bitmap.height));
  const canvas = new OffscreenCanvas(Math.round(bitmap.width * scale), Math.round(bitmap.height * scale));
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  let blob;
  for (const quality of fit.qualities) {
    blob = await canvas.convertToBlob({ type: fit.kind, quality });
    if (blob.size <= fit.target_bytes) {
      break;
    }
  }
  const name = `${file.name.replace(/\.[^.]*$/, "") || "photo"}.${fit.kind.split("/")[1].replace("jpeg", "jpg")}`;
  return new File([blob], name, { type: fit.kind, lastModified: file.lastModified });
}

let rule = null;
async function photoFit() {
  rule ||= await (await fetch(RULE_URL)).json();
  return rule;
}

function showRefusal(input, text) {
  let slot = input.closest("label")?.nextElementSibling;
  if (!slot?.hasAttribute("data-photo-refused")) {
    slot = document.createElement("p");
    slot.className = "error";
    slot.setAttribute("data-photo-refused", "");
    slot.setAttribute("role", "alert");
    (input.closest("label") || input).after(slot);
  }
  slot.textContent = text;
  slot.hidden = !text;
}

// The input's images fitted in place; its form's buttons wait meanwhile (a submit must not send the originals).
async function fitInput(input) {
  const images = [...input.files].filter((file) => file.type.startsWith("image/") || !file.type);
  if (!images.length) {
    return;
  }
  input.dataset.photos = "fitting";
  const buttons = [...(input.form?.querySelectorAll("button, input[type=submit]") || [])].filter((b) => !b.disabled);
  buttons.forEach((button) => { button.disabled = true; });
  try {
    const fit = await photoFit();
    const kept = new DataTransfer();
    const unreadable = [];
    for (const file of input.files) {
      const fitted = images.includes(file) ? await fitPhoto(file, fit) : file;
      if (fitted) {
        kept.items.add(fitted);
      } else {
        unreadable.push(file.name);
      }
    }
    input.files = kept.files;
    const lang = document.documentElement.lang.startsWith("zh") ? "zh" : "en";
    showRefusal(input, unreadable.map((name) => fit.unreadable[lang].replace("{name}", name)).join(" "));
  } finally {
    buttons.forEach((button) => { button.disabled = false; });
    input.dataset.photos = "fitted";
  }
}

// Loaded by every signed-in page (base.html): phones and desks alike send sized photos.
document.addEventListener("change", (event) => {
  const input = event.target;
  if (input instanceof HTMLInputElement && input.type === "file" && (input.accept || "").includes("image/")) {
    fitInput(input);
  }
});
