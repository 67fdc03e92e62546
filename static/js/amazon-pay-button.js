// Renders the Amazon Pay button from the JSON config the server put in the page.
// The config is data (application/json), so no server value is ever templated into code.
(function () {
  "use strict";
  function render() {
    var holder = document.getElementById("amazon-pay-button-config");
    var target = document.getElementById("AmazonPayButton");
    if (!holder || !target || !window.amazon || !window.amazon.Pay) {
      return;
    }
    var config = JSON.parse(holder.textContent);
    window.amazon.Pay.renderButton("#AmazonPayButton", config);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", render);
  } else {
    render();
  }
})();
