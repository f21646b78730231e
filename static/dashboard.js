// The dashboard's only script besides htmx: a Copy button on every snippet (the <pre>
// blocks and a new token's secret), also on content htmx swaps in later.
(function () {
  function copied(button, ok) {
    button.textContent = ok ? "Copied" : "Select and copy";
    setTimeout(function () { button.textContent = "Copy"; }, 2000);
  }

  // Without a secure context (plain http to a host name) the clipboard API is missing:
  // fall back to selecting the text in a hidden textarea.
  function copyByHand(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok;
  }

  function copy(text, button) {
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { copied(button, true); },
        function () { copied(button, copyByHand(text)); });
    } else {
      copied(button, copyByHand(text));
    }
  }

  htmx.onLoad(function (root) {
    var blocks = root.matches && root.matches("pre, .secret") ? [root] : root.querySelectorAll("pre, .secret");
    blocks.forEach(function (block) {
      if (block.parentElement && block.parentElement.classList.contains("snippet")) return;
      var wrapper = document.createElement("div");
      wrapper.className = "snippet";
      block.parentNode.insertBefore(wrapper, block);
      wrapper.appendChild(block);
      var button = document.createElement("button");
      button.type = "button";
      button.className = "copy";
      button.textContent = "Copy";
      button.setAttribute("aria-label", "Copy to the clipboard");
      button.addEventListener("click", function () { copy(block.textContent, button); });
      wrapper.appendChild(button);
    });
  });
})();
