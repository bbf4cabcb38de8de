/* The public form page (/f/<token>): which fields show, and sending the answers.
 *
 * Which fields show follows `x-visible-when` exactly as the server decides it
 * (jingwei/tickets/form_conditions.py, docs/tickets-forms.md): a condition sees the *effective*
 * answer of the field it names, i.e. the answer of a field that is shown and passes the field's
 * own checks; hidden, empty and wrong answers are all absent. So this file repeats the server's
 * per-field checks (form_fields.clean) closely enough to know "valid or not"; the server still
 * validates everything, and its Chinese messages are the ones shown.
 *
 * The pure part (visibleFields, clean) also runs under node for the tests. No dependencies.
 */
(function (root, factory) {
  "use strict";
  var api = factory();
  if (typeof module === "object" && module.exports) module.exports = api;
  if (typeof document !== "undefined" && document.getElementById("jw-form")) api.boot(document);
})(this, function () {
  "use strict";

  var INT_LIMIT = "9007199254740991"; // 2^53 - 1, as the server
  var MONEY_LIMIT = "999999999999990"; // the largest money the server parses before its range check
  var DECIMAL_DIGITS = 15;
  var REGION_DEPTH = 6;
  // Python's str.strip() whitespace (JavaScript's \s differs: it has \ufeff, lacks \x1c-\x1f, \x85).
  var WS = "[\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
  var STRIP = new RegExp("^" + WS + "+|" + WS + "+$", "g");
  var SPACES = new RegExp(WS + "+", "g");
  var DECIMAL_TEXT = /^-?\d{1,20}(\.\d{1,20})?$/;
  var DATE_TEXT = /^(\d{4})-(\d{2})-(\d{2})$/;
  var DATETIME_TEXT = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)(Z|[+-]\d{2}:\d{2})?$/;
  var FILE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
  var REGION_ID = /^[A-Za-z0-9_-]{1,32}$/;
  var INT_TEXT = /^\d{1,19}$/;
  var PHONE_CHARS = /^\+?[\d\s().-]+$/;
  var MOBILE = /^1[3-9]\d{9}$/;
  var LANDLINE = /^0[1-9]\d{8,10}$/;
  var EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s.]+$/;

  function strip(s) {
    return s.replace(STRIP, "");
  }

  function isEmpty(v) {
    return (
      v === undefined ||
      v === null ||
      (typeof v === "string" && strip(v) === "") ||
      (Array.isArray(v) && v.length === 0)
    );
  }

  // --- exact decimals (never floats): {neg, int, frac} without redundant zeros ---------------

  function decimal(raw) {
    var text;
    if (typeof raw === "number") {
      if (!isFinite(raw)) return null;
      text = String(raw);
      var e = /^(-?)(\d+)(?:\.(\d+))?e([+-]\d+)$/.exec(text);
      if (e) text = shift(e[1], e[2] + (e[3] || ""), e[2].length + Number(e[4]));
    } else if (typeof raw === "string" && DECIMAL_TEXT.test(strip(raw))) {
      text = strip(raw);
    } else {
      return null;
    }
    var m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text);
    if (!m) return null;
    var int = m[2].replace(/^0+(?=\d)/, "");
    var frac = (m[3] || "").replace(/0+$/, "");
    return { neg: m[1] === "-" && !(int === "0" && frac === ""), int: int, frac: frac };
  }

  function shift(sign, digits, point) {
    if (point <= 0) return sign + "0." + "0".repeat(-point) + digits;
    if (point >= digits.length) return sign + digits + "0".repeat(point - digits.length);
    return sign + digits.slice(0, point) + "." + digits.slice(point);
  }

  function decText(d) {
    return (d.neg ? "-" : "") + d.int + (d.frac ? "." + d.frac : "");
  }

  function decCompare(a, b) {
    var x = typeof a === "object" && a !== null ? a : decimal(a);
    var y = typeof b === "object" && b !== null ? b : decimal(b);
    if (!x || !y) return Math.sign(Number(a) - Number(b));
    if (x.neg !== y.neg) return x.neg ? -1 : 1;
    var sign = x.neg ? -1 : 1;
    if (x.int.length !== y.int.length) return x.int.length > y.int.length ? sign : -sign;
    if (x.int !== y.int) return x.int > y.int ? sign : -sign;
    var n = Math.max(x.frac.length, y.frac.length);
    var fx = x.frac.padEnd(n, "0");
    var fy = y.frac.padEnd(n, "0");
    return fx === fy ? 0 : fx > fy ? sign : -sign;
  }

  function decAbs(d) {
    return { neg: false, int: d.int, frac: d.frac };
  }

  // --- one field's own checks (form_fields.clean): the cleaned value, or undefined -----------

  function today(ctx) {
    var parts = {};
    new Intl.DateTimeFormat("en-CA", {
      timeZone: ctx.timeZone,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
    })
      .formatToParts(new Date(ctx.now))
      .forEach(function (p) {
        parts[p.type] = p.value;
      });
    return parts.year + "-" + parts.month + "-" + parts.day;
  }

  function validDate(text) {
    var m = DATE_TEXT.exec(text);
    if (!m) return false;
    var y = Number(m[1]), mo = Number(m[2]), d = Number(m[3]);
    if (y < 1) return false;
    var t = new Date(Date.UTC(2000, mo - 1, d));
    t.setUTCFullYear(y);
    return t.getUTCFullYear() === y && t.getUTCMonth() === mo - 1 && t.getUTCDate() === d;
  }

  function moment(text) {
    // Milliseconds of an aware ISO datetime; NaN when naive or not a time.
    var m = DATETIME_TEXT.exec(strip(text));
    if (!m || !m[3] || !validDate(m[1])) return NaN;
    var clock = m[2].length === 5 ? m[2] + ":00" : m[2];
    var frac = /\.(\d+)$/.exec(clock);
    if (frac) clock = clock.replace(/\.\d+$/, "." + frac[1].slice(0, 3).padEnd(3, "0"));
    return Date.parse(m[1] + "T" + clock + (m[3] === "Z" ? "Z" : m[3]));
  }

  function inRange(s, d) {
    if (s.minimum !== undefined && decCompare(d, s.minimum) < 0) return false;
    if (s.maximum !== undefined && decCompare(d, s.maximum) > 0) return false;
    return true;
  }

  function itemsInRange(s, n) {
    return !(s.minItems !== undefined && n < s.minItems) && !(s.maxItems !== undefined && n > s.maxItems);
  }

  var CLEAN = {
    text: function (s, raw, ctx, kind) {
      if (typeof raw !== "string") return undefined;
      var text = strip(raw);
      if (kind === "text" && /[\n\r\u2028\u2029]/.test(text)) return undefined;
      var n = Array.from(text).length;
      if (s.minLength !== undefined && n < s.minLength) return undefined;
      if (s.maxLength !== undefined && n > s.maxLength) return undefined;
      if (s.pattern) {
        var re = null;
        try {
          re = new RegExp(s.pattern, "u");
        } catch (e) {
          re = null; // a pattern only the server reads: it decides
        }
        if (re && !re.test(text)) return undefined;
      }
      return text;
    },
    number: function (s, raw) {
      var d = decimal(raw);
      if (!d || decCompare(decAbs(d), INT_LIMIT) > 0) return undefined;
      if (s.type === "integer") {
        if (d.frac !== "") return undefined;
      } else if ((d.int + d.frac).replace(/^0+/, "").replace(/0+$/, "").length > DECIMAL_DIGITS) {
        return undefined;
      }
      return inRange(s, d) ? decText(d) : undefined;
    },
    money: function (s, raw) {
      var d = decimal(raw);
      if (!d || decCompare(decAbs(d), MONEY_LIMIT) > 0 || d.frac.length > 2) return undefined;
      return inRange(s, d) ? decText(d) : undefined;
    },
    date: function (s, raw, ctx) {
      if (typeof raw !== "string" || !validDate(strip(raw))) return undefined;
      var value = strip(raw);
      var low = s.formatMinimum === "today" ? today(ctx) : s.formatMinimum;
      var high = s.formatMaximum === "today" ? today(ctx) : s.formatMaximum;
      if (low !== undefined && value < low) return undefined;
      if (high !== undefined && value > high) return undefined;
      return value;
    },
    datetime: function (s, raw, ctx) {
      if (typeof raw !== "string") return undefined;
      var at = moment(raw);
      if (isNaN(at)) return undefined;
      var low = s.formatMinimum === "now" ? ctx.now : s.formatMinimum !== undefined ? moment(s.formatMinimum) : NaN;
      var high = s.formatMaximum === "now" ? ctx.now : s.formatMaximum !== undefined ? moment(s.formatMaximum) : NaN;
      if (!isNaN(low) && at < low) return undefined;
      if (!isNaN(high) && at > high) return undefined;
      return strip(raw);
    },
    select: function (s, raw) {
      return typeof raw === "string" && (s.enum || []).indexOf(raw) >= 0 ? raw : undefined;
    },
    multiselect: function (s, raw) {
      var options = (s.items && s.items.enum) || [];
      if (!Array.isArray(raw) || !raw.every(function (v) { return typeof v === "string"; })) return undefined;
      if (!raw.every(function (v) { return options.indexOf(v) >= 0; })) return undefined;
      if (new Set(raw).size !== raw.length || !itemsInRange(s, raw.length)) return undefined;
      return options.filter(function (o) { return raw.indexOf(o) >= 0; });
    },
    boolean: function (s, raw) {
      return typeof raw === "boolean" ? raw : undefined;
    },
    region: function (s, raw) {
      var items = Array.isArray(raw) ? raw : [raw];
      var ok = items.every(function (i) {
        if (typeof i === "number") return Number.isInteger(i) && i > 0;
        return typeof i === "string" && REGION_ID.test(i);
      });
      if (!ok || items.length > REGION_DEPTH) return undefined;
      if (items.length > 1 && !itemsInRange(s, items.length)) return undefined;
      return items.slice();
    },
    phone: function (s, raw) {
      if (typeof raw === "number" && Number.isInteger(raw)) raw = String(raw);
      if (typeof raw !== "string") return undefined;
      var text = strip(raw.normalize("NFKC").replace(SPACES, " "));
      if (!PHONE_CHARS.test(text)) return undefined;
      var digits = text.replace(/\D/g, "");
      var international = text.charAt(0) === "+" || digits.slice(0, 2) === "00";
      if (digits.slice(0, 2) === "00") digits = digits.slice(2);
      var prefix = "";
      if (international && digits.slice(0, 2) === "86") {
        digits = digits.slice(2);
        if (digits && digits.charAt(0) !== "1" && digits.charAt(0) !== "0") digits = "0" + digits;
      } else if (international) {
        prefix = "+";
      } else if (digits.slice(0, 3) === "861" && digits.length === 13) {
        digits = digits.slice(2);
      }
      if (digits.length < 5 || digits.length > 15) return undefined;
      digits = prefix + digits;
      return MOBILE.test(digits) || LANDLINE.test(digits) ? digits : undefined;
    },
    email: function (s, raw) {
      if (typeof raw !== "string") return undefined;
      var text = strip(raw.normalize("NFKC").replace(SPACES, " ")).toLowerCase();
      return EMAIL.test(text) && text.length <= 254 ? text : undefined;
    },
    files: function (s, raw) {
      var items = typeof raw === "string" ? [raw] : raw;
      if (!Array.isArray(items) || !items.every(function (i) { return typeof i === "string" && FILE_ID.test(i); })) return undefined;
      if (new Set(items).size !== items.length || !itemsInRange(s, items.length)) return undefined;
      return items.slice();
    },
    picker: function (s, raw) {
      function id(v) {
        if (typeof v === "string" && INT_TEXT.test(strip(v))) v = Number(strip(v));
        return typeof v === "number" && Number.isInteger(v) && v > 0 ? v : undefined;
      }
      if (s.type !== "array") return id(raw);
      if (!Array.isArray(raw)) return undefined;
      var ids = raw.map(id);
      if (ids.some(function (i) { return i === undefined; })) return undefined;
      if (new Set(ids).size !== ids.length || !itemsInRange(s, ids.length)) return undefined;
      return ids;
    },
  };
  CLEAN.textarea = CLEAN.text;
  ["attachment", "photo", "signature"].forEach(function (k) { CLEAN[k] = CLEAN.files; });
  ["customer", "product", "part", "project"].forEach(function (k) { CLEAN[k] = CLEAN.picker; });

  /** The cleaned answer of `key`, or undefined when empty or wrong (the server's ABSENT). */
  function clean(definition, key, raw, ctx) {
    if (isEmpty(raw)) return undefined;
    var kind = definition.ui[key].widget;
    var cleaner = CLEAN[kind];
    return cleaner ? cleaner(definition.schema.properties[key], raw, ctx, kind) : undefined;
  }

  // --- conditions: as docs/tickets-forms.md ----------------------------------------------------

  function compare(kind, a, b) {
    if (kind === "number" || kind === "money") return decCompare(a, b);
    if (kind === "datetime") return Math.sign(moment(a) - moment(b));
    if (kind === "text" || kind === "textarea") {
      a = strip(a);
      b = strip(String(b));
    }
    return a === b ? 0 : a < b ? -1 : 1; // dates: ISO text orders as the calendar does
  }

  function holds(cond, get, kindOf) {
    if (cond.all) return cond.all.every(function (c) { return holds(c, get, kindOf); });
    if (cond.any) return cond.any.some(function (c) { return holds(c, get, kindOf); });
    var v = get(cond.field); // undefined: hidden, empty or wrong
    switch (cond.op) {
      case "empty": return v === undefined;
      case "not_empty": return v !== undefined;
      case "ne": return !holds({ field: cond.field, op: "eq", value: cond.value }, get, kindOf);
      case "not_in": return !holds({ field: cond.field, op: "in", value: cond.value }, get, kindOf);
    }
    if (v === undefined) return false;
    var wanted = cond.op === "in" ? cond.value : [cond.value];
    if (Array.isArray(v)) {
      return (cond.op === "eq" || cond.op === "in") && wanted.some(function (w) { return v.indexOf(w) >= 0; });
    }
    var c = function (w) { return compare(kindOf(cond.field), v, w); };
    switch (cond.op) {
      case "eq": case "in": return wanted.some(function (w) { return c(w) === 0; });
      case "gt": return c(cond.value) > 0;
      case "gte": return c(cond.value) >= 0;
      case "lt": return c(cond.value) < 0;
      case "lte": return c(cond.value) <= 0;
    }
    return false;
  }

  /** The keys of the fields shown for these answers, in display order (as the server's
   * forms.visible_fields). ctx: {now: epoch ms, timeZone: "Asia/Shanghai"}. */
  function visibleFields(definition, answers, ctx) {
    var props = definition.schema.properties;
    var kindOf = function (key) { return definition.ui[key].widget; };
    var memo = new Map();
    var shown = function (key) {
      var cond = props[key]["x-visible-when"];
      return !cond || holds(cond, effective, kindOf);
    };
    var effective = function (key) {
      if (!memo.has(key)) memo.set(key, shown(key) ? clean(definition, key, answers[key], ctx) : undefined);
      return memo.get(key);
    };
    return Object.keys(props)
      .sort(function (a, b) { return definition.ui[a].order - definition.ui[b].order; })
      .filter(shown);
  }

  // --- the page --------------------------------------------------------------------------------

  function newSubmissionId() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  function boot(doc) {
    var form = doc.getElementById("jw-form");
    var definition = JSON.parse(doc.getElementById("jw-definition").textContent);
    var regions = JSON.parse(doc.getElementById("jw-regions").textContent);
    var cfg = form.dataset;
    // One id per page load: a double click, or a retry after a lost answer, makes one ticket.
    var submissionId = newSubmissionId();
    var summary = doc.getElementById("jw-summary");
    var button = doc.getElementById("jw-submit");
    var fields = {};
    Array.prototype.forEach.call(form.querySelectorAll(".field[data-key]"), function (el) {
      fields[el.dataset.key] = el;
    });
    var children = {};
    regions.forEach(function (r) {
      (children[r.parent === null ? "" : r.parent] = children[r.parent === null ? "" : r.parent] || []).push(r);
    });
    var busy = false;

    function ctx() {
      return { now: Date.now(), timeZone: cfg.timeZone };
    }

    function label(key) {
      return (definition.ui[key] && definition.ui[key].label) || key;
    }

    function aware(value) {
      // datetime-local gives the wall clock; the server wants the zone said (北京时间).
      if (!value) return "";
      return (value.length === 16 ? value + ":00" : value) + cfg.offset;
    }

    function read(key) {
      var el = fields[key];
      var kind = el.dataset.kind;
      if (el.classList.contains("notice")) return undefined;
      if (kind === "multiselect") {
        return Array.prototype.filter
          .call(el.querySelectorAll("input[type=checkbox]"), function (i) { return i.checked; })
          .map(function (i) { return i.value; });
      }
      if (kind === "boolean") {
        var on = el.querySelector("input[type=radio]:checked");
        return on ? on.value === "true" : undefined;
      }
      if (kind === "region") {
        var path = [];
        var selects = el.querySelectorAll("select");
        for (var i = 0; i < selects.length && selects[i].value; i++) path.push(Number(selects[i].value));
        return path;
      }
      var input = el.querySelector("input, textarea, select");
      var value = input ? input.value : "";
      if (kind === "datetime") return aware(value);
      if (kind === "number" || kind === "money") return strip(value.normalize("NFKC"));
      return value;
    }

    function answers() {
      var out = {};
      Object.keys(fields).forEach(function (key) {
        var value = read(key);
        if (!isEmpty(value)) out[key] = value;
      });
      return out;
    }

    function refresh() {
      var visible = new Set(visibleFields(definition, answers(), ctx()));
      Object.keys(fields).forEach(function (key) {
        fields[key].hidden = !visible.has(key);
      });
    }

    function regionSelect(el, level, parent) {
      var max = Number(el.dataset.regionMax || REGION_DEPTH);
      var options = children[parent] || [];
      if (level >= max || !options.length) return;
      var select = doc.createElement("select");
      select.name = el.closest(".field").dataset.key;
      select.dataset.level = String(level);
      select.setAttribute("aria-label", label(select.name) + "：第 " + (level + 1) + " 级");
      select.add(new Option("请选择", ""));
      options.forEach(function (r) { select.add(new Option(r.name, String(r.id))); });
      el.appendChild(select);
    }

    Array.prototype.forEach.call(form.querySelectorAll(".region"), function (el) {
      el.addEventListener("change", function (ev) {
        var level = Number(ev.target.dataset.level);
        Array.prototype.forEach.call(el.querySelectorAll("select"), function (s) {
          if (Number(s.dataset.level) > level) s.remove();
        });
        if (ev.target.value) regionSelect(el, level + 1, ev.target.value);
      });
    });

    Array.prototype.forEach.call(form.querySelectorAll("input[type=datetime-local]"), function (input) {
      var s = definition.schema.properties[input.name] || {};
      var local = function () {
        // The business time zone's wall clock now, as datetime-local wants it.
        var p = {};
        new Intl.DateTimeFormat("en-CA", {
          timeZone: cfg.timeZone, hourCycle: "h23", year: "numeric", month: "2-digit",
          day: "2-digit", hour: "2-digit", minute: "2-digit",
        }).formatToParts(new Date()).forEach(function (x) { p[x.type] = x.value; });
        return p.year + "-" + p.month + "-" + p.day + "T" + p.hour + ":" + p.minute;
      };
      if (s.formatMinimum === "now") input.min = local();
      if (s.formatMaximum === "now") input.max = local();
    });

    function clearError(key) {
      var el = fields[key];
      var p = doc.getElementById("err-" + key);
      if (!el || !p) return;
      el.classList.remove("invalid");
      p.hidden = true;
      p.textContent = "";
      Array.prototype.forEach.call(el.querySelectorAll("input, textarea, select"), function (i) {
        i.removeAttribute("aria-invalid");
      });
    }

    function showSummary(lines) {
      summary.textContent = "";
      lines.forEach(function (line) {
        var p = doc.createElement("p");
        p.textContent = line;
        summary.appendChild(p);
      });
      summary.hidden = !lines.length;
      if (lines.length) summary.scrollIntoView({ block: "center" });
    }

    function showErrors(errors) {
      var elsewhere = [];
      var first = null;
      errors.forEach(function (e) {
        var key = typeof e.field === "string" && e.field.indexOf("answers.") === 0 ? e.field.slice(8) : null;
        var el = key && fields[key];
        var p = key && doc.getElementById("err-" + key);
        if (el && p && !el.hidden) {
          el.classList.add("invalid");
          p.textContent = e.message;
          p.hidden = false;
          Array.prototype.forEach.call(el.querySelectorAll("input, textarea, select"), function (i) {
            i.setAttribute("aria-invalid", "true");
          });
          if (!first) first = el;
        } else {
          elsewhere.push(e.message || "提交的内容有误");
        }
      });
      var lines = ["请修改以下内容后再提交（共 " + errors.length + " 处）。"].concat(elsewhere);
      showSummary(lines);
      if (first) {
        first.scrollIntoView({ block: "center" });
        var focusable = first.querySelector("input, textarea, select");
        if (focusable) focusable.focus({ preventScroll: true });
      }
    }

    function showDone(body) {
      form.hidden = true;
      var done = doc.getElementById("jw-done");
      if (body.number && body.progress_url) {
        var token = body.progress_url.split("/").pop();
        doc.getElementById("jw-number").textContent = body.number;
        doc.getElementById("jw-link").href = body.progress_url;
        doc.getElementById("jw-qr").src = cfg.qrUrl.replace("TOKEN", encodeURIComponent(token));
        doc.getElementById("jw-done-text").textContent = "我们已收到您的信息，会尽快处理。";
        doc.getElementById("jw-done-ticket").hidden = false;
      }
      done.hidden = false;
      done.focus();
      done.scrollIntoView({ block: "start" });
    }

    function submit(ev) {
      ev.preventDefault();
      if (busy) return;
      busy = true;
      button.disabled = true;
      button.textContent = "提交中…";
      Object.keys(fields).forEach(clearError);
      showSummary([]);
      var honeypot = form.querySelector("input[name=website]");
      var finish = function () {
        busy = false;
        button.disabled = false;
        button.textContent = "提交";
      };
      fetch(cfg.submitUrl, {
        method: "POST",
        credentials: "omit",
        referrerPolicy: "no-referrer",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({
          submission_id: submissionId,
          answers: answers(),
          website: honeypot ? honeypot.value : "",
        }),
      })
        .then(function (response) {
          return response
            .json()
            .catch(function () { return {}; })
            .then(function (body) {
              if (response.status === 200 || response.status === 201) {
                showDone(body);
              } else if (response.status === 422 && Array.isArray(body.errors) && body.errors.length) {
                showErrors(body.errors);
              } else if (response.status === 404) {
                showSummary(["表单已关闭，无法提交。请联系商家。"]);
              } else {
                showSummary([body.message || "提交失败，请稍后重试。"]);
              }
              finish();
            });
        })
        .catch(function () {
          showSummary(["网络异常，提交没有完成。请检查网络后再点“提交”（不会重复提交）。"]);
          finish();
        });
    }

    form.addEventListener("input", function (ev) {
      var el = ev.target.closest(".field");
      if (el) clearError(el.dataset.key);
      refresh();
    });
    form.addEventListener("change", refresh);
    form.addEventListener("submit", submit);
    refresh();
  }

  return { visibleFields: visibleFields, clean: clean, holds: holds, boot: boot };
});
