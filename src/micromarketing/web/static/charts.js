// plotly.js is 4.6 MB: fetch it after the page has loaded, so the page shows at once, then tell
// htmx ("plotly-ready"), which fetches the fragments that draw charts.
window.addEventListener("load", () => {
  const script = document.createElement("script");
  script.src = "/static/plotly.min.js";
  script.onload = () => htmx.trigger(document.body, "plotly-ready");
  document.head.append(script);
});
