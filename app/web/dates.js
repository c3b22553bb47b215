/* Threadline sidebar: dates in words, in the rep's own time zone (the browser's).

   Days are calendar days, not 24-hour spans: 22:44 yesterday and 16:52
   yesterday are both "yesterday" at 09:00 today. Counting elapsed hours had
   called the first "today" and the second "yesterday". */
(function () {
  "use strict";
  const DAY = 86400000;

  // Whole calendar days from a to b in the local time zone (negative when b is earlier).
  // Date.UTC of the local date parts: a day is then exactly DAY long, DST or not.
  function dayNumber(d) { return Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()) / DAY; }

  function relativeDay(value, now) {
    if (value === null || value === undefined || value === "") return "never";
    const d = new Date(value);
    if (isNaN(d)) return "—";
    const days = dayNumber(now ? new Date(now) : new Date()) - dayNumber(d);
    if (days === 0) return "today";
    if (days === 1) return "yesterday";
    if (days === -1) return "tomorrow";
    const n = Math.abs(days);
    let text;
    if (n < 60) text = n + " days";
    else if (n < 730) text = Math.round(n / 30.44) + " months";
    else text = Math.round(n / 365.25) + " years";
    return days > 0 ? text + " ago" : "in " + text;
  }

  // How often a series of occurrences repeats, from their start times: "every week",
  // "every 2 weeks", "every month", "every day"; "" when the gaps are irregular.
  function cadence(starts) {
    const days = starts.map(s => dayNumber(new Date(s))).sort((a, b) => a - b);
    if (days.length < 2) return "";
    const gaps = new Set();
    for (let i = 1; i < days.length; i++) gaps.add(days[i] - days[i - 1]);
    const only = gaps.size === 1 ? [...gaps][0] : null;
    if (only === 1) return "every day";
    if (only === 7) return "every week";
    if (only && only % 7 === 0 && only <= 28) return "every " + only / 7 + " weeks";
    if ([...gaps].every(g => g >= 28 && g <= 31)) return "every month";
    return "";
  }

  window.ThreadlineDates = { relativeDay, cadence };
})();
