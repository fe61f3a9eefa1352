// "Use my location" on the report form: fills the hidden lat/lon fields from the phone's position.
// Progressive enhancement: without JavaScript or permission the address field is enough.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-geolocate]");
  if (!button || !navigator.geolocation) return;
  event.preventDefault();
  const form = button.form;
  const status = form.querySelector("[data-geolocate-status]");
  navigator.geolocation.getCurrentPosition((position) => {
    form.elements.lat.value = position.coords.latitude.toFixed(6);
    form.elements.lon.value = position.coords.longitude.toFixed(6);
    status.textContent = `${form.elements.lat.value}, ${form.elements.lon.value}`;
  }, (error) => {
    status.textContent = error.message;
  }, { enableHighAccuracy: true, timeout: 15000 });
});
