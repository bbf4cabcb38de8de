// The console's side of a form, written as docs/tickets-forms.md shows it, so that tests can
// hold it against the server. Reads one JSON request per line on stdin, answers one line:
//   {"pattern": "...", "inputs": ["..."]}       -> {"ok": true, "results": [true, false]}
//                                                  or {"ok": false} when the pattern does not compile
//   {"definition": {...}, "answers": {...}}      -> {"visible": ["key", ...]}
// Answers given to `visible` are valid or empty (the console's own field checks are not
// reproduced here: an answer with an error would count as absent, as on the server).
import { createInterface } from "node:readline";

const isEmpty = (v) =>
  v === undefined ||
  v === null ||
  (typeof v === "string" && v.trim() === "") ||
  (Array.isArray(v) && v.length === 0);

// --- from docs/tickets-forms.md ------------------------------------------------------------
function holds(cond, get, kindOf) {
  if (cond.all) return cond.all.every((c) => holds(c, get, kindOf));
  if (cond.any) return cond.any.some((c) => holds(c, get, kindOf));
  const v = get(cond.field); // undefined: absent (hidden, empty, or with an error)
  switch (cond.op) {
    case "empty": return v === undefined;
    case "not_empty": return v !== undefined;
    case "ne": return !holds({ ...cond, op: "eq" }, get, kindOf);
    case "not_in": return !holds({ ...cond, op: "in" }, get, kindOf);
  }
  if (v === undefined) return false;
  const wanted = cond.op === "in" ? cond.value : [cond.value];
  if (Array.isArray(v)) return ["eq", "in"].includes(cond.op) && wanted.some((w) => v.includes(w));
  const c = (w) => compare(kindOf(cond.field), v, w);
  switch (cond.op) {
    case "eq": case "in": return wanted.some((w) => c(w) === 0);
    case "gt": return c(cond.value) > 0;
    case "gte": return c(cond.value) >= 0;
    case "lt": return c(cond.value) < 0;
    case "lte": return c(cond.value) <= 0;
  }
  return false;
}

function compare(kind, a, b) {
  if (kind === "number" || kind === "money") return Math.sign(Number(a) - Number(b)); // decimals in the real console
  if (kind === "datetime") return Math.sign(Date.parse(a) - Date.parse(b));
  if (kind === "text" || kind === "textarea") { a = a.trim(); b = b.trim(); }
  return a === b ? 0 : a < b ? -1 : 1; // dates: ISO text orders as the calendar does
}

function visibleFields(definition, answers, clean) {
  const props = definition.schema.properties;
  const kindOf = (key) => definition.ui[key].widget;
  const memo = new Map();
  const shown = (key) => {
    const cond = props[key]["x-visible-when"];
    return !cond || holds(cond, effective, kindOf);
  };
  // The answer conditions see: shown and valid, otherwise absent. Conditions have no cycles.
  const effective = (key) => {
    if (!memo.has(key)) memo.set(key, shown(key) ? clean(key, answers[key]) : undefined);
    return memo.get(key);
  };
  return Object.keys(props)
    .sort((a, b) => definition.ui[a].order - definition.ui[b].order)
    .filter(shown);
}
// --- end of the documented part --------------------------------------------------------------

function cleanValidOrEmpty(definition) {
  return (key, value) => {
    if (isEmpty(value)) return undefined;
    return typeof value === "string" ? value.trim() : value;
  };
}

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const request = JSON.parse(line);
  let answer;
  if ("pattern" in request) {
    try {
      const re = new RegExp(request.pattern, "u");
      answer = { ok: true, results: request.inputs.map((s) => re.test(s)) };
    } catch (e) {
      answer = { ok: false };
    }
  } else {
    const d = request.definition;
    answer = { visible: visibleFields(d, request.answers, cleanValidOrEmpty(d)) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
});
