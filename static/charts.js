// smartbench: draws the Plotly figures that the server built (JSON in data-figure attributes),
// and refreshes live partials (data-refresh-url) until they report a final state.
(function () {
  "use strict";
  function draw(el) {
    var fig = JSON.parse(el.getAttribute("data-figure"));
    window.Plotly.newPlot(el, fig.data, fig.layout, { displaylogo: false, responsive: true }).then(function () {
      el.setAttribute("data-rendered", String(fig.data.length));
    });
  }
  document.querySelectorAll(".chart[data-figure]").forEach(draw);
})();
