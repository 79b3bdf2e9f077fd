// The pass holder's page: the signed pass from the link's fragment, with a code computed every
// 30 s from the pass's own secret (protocol/rotating_passes.py), drawn as a QR code. The
// fragment never leaves the browser: browsers do not send it, and this page sends nothing.
"use strict";

const PASS_BYTES = 84;
const STEP_S = 30;

function fromBase64Url(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const raw = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
  return Uint8Array.from(raw, (char) => char.charCodeAt(0));
}

function readLink() {
  // #v1.<pass, base64url>.<pass secret, base64url>[.<holder's name, UTF-8, base64url>]
  const parts = location.hash.replace(/^#/, "").split(".");
  if (parts[0] !== "v1" || parts.length < 3) throw new Error("link");
  const pass = fromBase64Url(parts[1]);
  const secret = fromBase64Url(parts[2]);
  if (pass.length !== PASS_BYTES || pass[0] !== 0xa7 || secret.length !== 32) throw new Error("link");
  const name = parts[3] ? new TextDecoder().decode(fromBase64Url(parts[3])) : "";
  return { pass, secret, name };
}

function minutesAt(pass, offset) {
  return new DataView(pass.buffer, pass.byteOffset).getUint32(offset);
}

async function stepCode(key, step) {
  const counter = new DataView(new ArrayBuffer(8));
  counter.setUint32(0, Math.floor(step / 2 ** 32));
  counter.setUint32(4, step >>> 0);
  const mac = await crypto.subtle.sign("HMAC", key, counter.buffer);
  return new Uint8Array(mac).slice(0, 8);
}

function draw(canvas, bytes) {
  const matrix = qrMatrix(bytes);
  const quiet = 4;
  const cells = matrix.length + 2 * quiet;
  const scale = Math.floor(canvas.width / cells);
  const offset = Math.floor((canvas.width - scale * cells) / 2);
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.fillStyle = "#000";
  matrix.forEach((row, y) =>
    row.forEach((dark, x) => {
      if (dark) context.fillRect(offset + (x + quiet) * scale, offset + (y + quiet) * scale, scale, scale);
    }),
  );
}

function say(text, bad) {
  const message = document.getElementById("message");
  message.textContent = text;
  message.className = bad ? "bad" : "";
}

async function start() {
  let link;
  try {
    link = readLink();
  } catch (error) {
    say("Liên kết thẻ không đúng: hãy mở lại liên kết được cấp. · This pass link is broken: open the link you were given again.", true);
    return;
  }
  if (link.name) document.getElementById("holder-name").textContent = link.name;
  const from = new Date(minutesAt(link.pass, 12) * 60000);
  const until = new Date(minutesAt(link.pass, 16) * 60000);
  const shown = (moment) => moment.toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" });
  document.getElementById("valid").textContent = `${shown(from)} → ${shown(until)}`;
  const key = await crypto.subtle.importKey("raw", link.secret, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const canvas = document.getElementById("code");
  const bar = document.querySelector("#countdown span");
  let drawnStep = null;
  async function tick() {
    const now = Date.now();
    const step = Math.floor(now / 1000 / STEP_S);
    bar.style.width = `${100 - (((now / 1000) % STEP_S) / STEP_S) * 100}%`;
    if (now >= until.getTime()) {
      say("Thẻ đã hết hạn. · This pass has expired.", true);
    } else if (now < from.getTime()) {
      say("Thẻ chưa đến giờ hiệu lực. · This pass is not valid yet.", true);
    }
    if (step === drawnStep) return;
    drawnStep = step;
    const code = new Uint8Array(PASS_BYTES + 12);
    code.set(link.pass, 0);
    new DataView(code.buffer).setUint32(PASS_BYTES, step);
    code.set(await stepCode(key, step), PASS_BYTES + 4);
    draw(canvas, code);
    canvas.dataset.step = String(step);
  }
  await tick();
  setInterval(tick, 1000);
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/pass/sw.js", { scope: "/pass/" }).catch(() => {});
  }
}

document.addEventListener("DOMContentLoaded", start);
