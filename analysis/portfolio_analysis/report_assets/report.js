// Draws the report's charts with uPlot from the JSON in #report-data. Each chart container
// (data-chart) gets data-drawn="1" once drawn; <body> gets data-charts-drawn="N" when all
// are, or data-chart-error with the message when one fails (the browser test reads both).
(function () {
  "use strict";
  var C = {blue: "#0072B2", orange: "#E69F00", green: "#009E73", vermillion: "#D55E00",
           purple: "#CC79A7", sky: "#56B4E9", black: "#1d2733", grey: "#8a949e"};
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var charts = [];
  var drawn = 0;

  function times(dates) {
    return dates.map(function (d) { return Date.parse(d + "T00:00:00Z") / 1000; });
  }
  function widthOf(el) { return Math.max(280, el.clientWidth || 800); }
  function fixed(digits, suffix) {
    return function (u, v) { return v == null ? "-" : v.toFixed(digits) + (suffix || ""); };
  }
  function axes(yLabel, ySize) {
    return [
      {stroke: "#56616b", grid: {stroke: "#eceff2"}},
      {label: yLabel, stroke: "#56616b", grid: {stroke: "#eceff2"}, size: ySize || 60}
    ];
  }
  function hline(value, colour) {
    // A horizontal reference line drawn under the series (e.g. RSI 30/70, zero).
    return function (u) {
      var y = u.valToPos(value, "y", true), ctx = u.ctx;
      ctx.save(); ctx.strokeStyle = colour; ctx.setLineDash([5, 4]); ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(u.bbox.left, y); ctx.lineTo(u.bbox.left + u.bbox.width, y);
      ctx.stroke(); ctx.restore();
    };
  }
  function draw(name, options, columns) {
    var el = document.querySelector('[data-chart="' + name + '"]');
    if (!el) { return; }
    options.width = widthOf(el);
    options.tzDate = function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); };
    var chart = new uPlot(options, columns, el);
    charts.push([chart, el]);
    el.setAttribute("data-drawn", "1");
    drawn += 1;
  }

  function portfolioCharts(p) {
    var t = times(p.dates);
    var money = fixed(2);
    var series = [{}, {label: "Portfolio", stroke: C.blue, width: 2, value: money}];
    var cols = [t, p.value];
    if (p.reference) {
      series.push({label: p.reference_label || "Reference", stroke: C.grey, width: 1.5,
                   dash: [6, 4], value: money});
      cols.push(p.reference);
    }
    draw("equity", {title: "Portfolio value", height: 280, series: series, axes: axes("value", 70)}, cols);
    draw("drawdown", {title: "Drawdown (% below the running peak)", height: 190,
      series: [{}, {label: "Drawdown", stroke: C.vermillion, fill: "rgba(213,94,0,0.25)",
                    value: fixed(2, "%")}],
      axes: axes("%", 50)}, [t, p.drawdown]);
    draw("volatility", {title: "Rolling volatility, " + p.window + " days (annualised %)",
      height: 190, series: [{}, {label: "Volatility", stroke: C.purple, width: 1.5,
                                 value: fixed(1, "%")}],
      axes: axes("%", 50)}, [t, p.volatility]);
    draw("sharpe", {title: "Rolling Sharpe ratio, " + p.window + " days (annualised)",
      height: 190, series: [{}, {label: "Sharpe", stroke: C.green, width: 1.5, value: fixed(2)}],
      axes: axes("Sharpe", 50), hooks: {drawAxes: [hline(0, C.grey)]}}, [t, p.sharpe]);
  }

  function tickerCharts(s) {
    var t = times(s.dates);
    var key = "sync-" + s.ticker;
    var cursor = {sync: {key: key}};
    var money = fixed(2);
    var series = [{}], cols = [t], bands = [];
    function add(column, opts) {
      if (!s[column]) { return; }
      series.push(opts); cols.push(s[column]);
    }
    add("bollinger_upper", {label: "Bollinger upper", stroke: C.sky, width: 1, value: money});
    add("bollinger_lower", {label: "Bollinger lower", stroke: C.sky, width: 1, value: money});
    if (s.bollinger_upper && s.bollinger_lower) {
      bands.push({series: [1, 2], fill: "rgba(86,180,233,0.15)"});
    }
    add("close", {label: "Close", stroke: C.black, width: 1.8, value: money});
    add("sma_20", {label: "SMA 20", stroke: C.orange, width: 1.2, value: money});
    add("sma_50", {label: "SMA 50", stroke: C.green, width: 1.2, value: money});
    add("sma_200", {label: "SMA 200", stroke: C.purple, width: 1.2, dash: [4, 3], value: money});
    draw("price:" + s.ticker, {title: s.ticker + ": close, moving averages and Bollinger bands",
      height: 250, series: series, bands: bands, cursor: cursor, axes: axes("price", 60)}, cols);
    if (s.rsi_14) {
      draw("rsi:" + s.ticker, {title: s.ticker + ": RSI 14 (70 overbought, 30 oversold)",
        height: 130, cursor: cursor,
        scales: {y: {range: [0, 100]}},
        series: [{}, {label: "RSI 14", stroke: C.blue, width: 1.4, value: fixed(1)}],
        axes: axes("RSI", 60), hooks: {drawAxes: [hline(70, C.vermillion), hline(30, C.green)]}},
        [t, s.rsi_14]);
    }
    if (s.macd && s.macd_signal) {
      var hist = s.macd.map(function (m, i) {
        var sig = s.macd_signal[i];
        return m == null || sig == null ? null : m - sig;
      });
      draw("macd:" + s.ticker, {title: s.ticker + ": MACD 12/26/9", height: 150, cursor: cursor,
        series: [{},
          {label: "Histogram", stroke: C.grey, fill: "rgba(138,148,158,0.45)",
           paths: uPlot.paths.bars({size: [0.8, 6]}), value: money, points: {show: false}},
          {label: "MACD", stroke: C.blue, width: 1.4, value: money},
          {label: "Signal", stroke: C.orange, width: 1.4, value: money}],
        axes: axes("MACD", 60), hooks: {drawAxes: [hline(0, C.grey)]}},
        [t, hist, s.macd, s.macd_signal]);
    }
  }

  try {
    if (data.portfolio) { portfolioCharts(data.portfolio); }
    data.tickers.forEach(tickerCharts);
    var expected = document.querySelectorAll("[data-chart]").length;
    if (drawn !== expected) {
      throw new Error("drew " + drawn + " of " + expected + " charts");
    }
    document.body.setAttribute("data-charts-drawn", String(drawn));
  } catch (err) {
    document.body.setAttribute("data-chart-error", String(err && err.message || err));
    throw err;
  }
  var pending = null;
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(function () {
      charts.forEach(function (pair) {
        pair[0].setSize({width: widthOf(pair[1]), height: pair[0].height});
      });
    }, 100);
  });
})();
