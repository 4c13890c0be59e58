// The course website's script (loaded by book/_ext/course_site.py on pages with a plotly figure).
// On a phone, a figure's legend moves from the right of the plot to below it, and its title is
// wrapped to the narrow width: at the right, the legend would squeeze the plot to a sliver.
(function () {
  "use strict";
  var PHONE = 640; // px: narrower screens get the phone layout
  var TITLE_CHARS = 40; // characters per title line on a phone

  function wrap(text) {
    var words = text.replace(/<br>/g, " ").split(" ");
    var lines = [];
    var line = "";
    words.forEach(function (word) {
      if (line && line.length + 1 + word.length > TITLE_CHARS) {
        lines.push(line);
        line = word;
      } else {
        line = line ? line + " " + word : word;
      }
    });
    lines.push(line);
    return lines.join("<br>");
  }

  window.addEventListener("load", function () {
    if (!window.Plotly || window.innerWidth > PHONE) {
      return;
    }
    document.querySelectorAll(".plotly-graph-div").forEach(function (div) {
      if (!div.layout) {
        return;
      }
      var title = div.layout.title && div.layout.title.text;
      var update = {
        "legend.orientation": "h", "legend.x": 0, "legend.xanchor": "left",
        "legend.y": 0, "legend.yanchor": "bottom", "legend.yref": "container",
        "margin.b": 130, "margin.l": 50, "margin.r": 10, "title.font.size": 13
      };
      if (title) {
        update["title.text"] = wrap(title);
      }
      window.Plotly.relayout(div, update);
    });
  });
})();
