// The copy button of an interactive example (">>> " and "... " prompts, output lines between them) copies
// the code only: without the prompts, without the output, ready to paste into a file or a shell.
document.addEventListener(
  "click",
  function (event) {
    var button = event.target.closest
      ? event.target.closest('.md-code__button[data-md-type="copy"], .md-clipboard')
      : null;
    if (!button) {
      return;
    }
    var block = button.closest(".highlight");
    var code = block ? block.querySelector("code") : null;
    if (!code) {
      return;
    }
    var lines = code.textContent.split("\n");
    if (!lines.some(function (line) { return line.startsWith(">>>"); })) {
      return;
    }
    var kept = [];
    lines.forEach(function (line) {
      if (line.startsWith(">>> ") || line.startsWith("... ")) {
        kept.push(line.slice(4));
      } else if (line === ">>>" || line === "...") {
        kept.push("");
      }
    });
    button.setAttribute("data-clipboard-text", kept.join("\n") + "\n");
  },
  true
);
