// feedline's demo page: the gRPC API over gRPC-Web from plain JavaScript, no build step.
// A minimal protobuf codec for the few messages the page uses, the gRPC-Web framing (5-byte
// frames, a trailer frame), unary calls and the live feed stream. Served by `feed-server --web`.
"use strict";

// ---------- protobuf: varints (BigInt for uint64), strings, nested messages ----------
const enc = new TextEncoder();
const dec = new TextDecoder();

function varint(n) {
  let v = BigInt(n);
  const out = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
}

// Encodes `fields`: [number, kind, value] with kind "u" (varint), "s" (string), "b" (bool).
function encode(fields) {
  const out = [];
  for (const [num, kind, value] of fields) {
    if (value === undefined || value === null || value === "" || value === 0 || value === 0n || value === false) continue;
    if (kind === "s") {
      const bytes = enc.encode(value);
      out.push(...varint((num << 3) | 2), ...varint(bytes.length), ...bytes);
    } else {
      out.push(...varint(num << 3), ...varint(kind === "b" ? 1 : value));
    }
  }
  return new Uint8Array(out);
}

// Decodes a message into { field: [values] } (varints as BigInt, length-delimited as bytes,
// fixed64 as a DataView offset for doubles).
function decode(bytes) {
  const fields = {};
  let i = 0;
  const readVarint = () => {
    let v = 0n, shift = 0n, b;
    do {
      b = bytes[i++];
      v |= BigInt(b & 0x7f) << shift;
      shift += 7n;
    } while (b & 0x80);
    return v;
  };
  while (i < bytes.length) {
    const key = Number(readVarint());
    const num = key >> 3, wire = key & 7;
    let value;
    if (wire === 0) value = readVarint();
    else if (wire === 2) {
      const len = Number(readVarint());
      value = bytes.subarray(i, i + len);
      i += len;
    } else if (wire === 1) {
      value = new DataView(bytes.buffer, bytes.byteOffset + i, 8).getFloat64(0, true);
      i += 8;
    } else if (wire === 5) {
      i += 4;
      continue;
    } else throw new Error("unsupported wire type " + wire);
    (fields[num] ||= []).push(value);
  }
  return fields;
}

const str = (f, n) => (f[n] ? dec.decode(f[n][0]) : "");
const u64 = (f, n) => (f[n] ? f[n][0].toString() : "0");
const num = (f, n) => (f[n] ? Number(f[n][0]) : 0);

const Post = (b) => {
  const f = decode(b);
  return { id: u64(f, 1), author: u64(f, 2), createdAt: num(f, 3), text: str(f, 5), score: f[8] ? f[8][0] : 0 };
};
const User = (b) => {
  const f = decode(b);
  return { id: u64(f, 1), handle: str(f, 2), followers: num(f, 5), following: num(f, 6), posts: num(f, 7) };
};
const FeedPage = (b) => {
  const f = decode(b);
  const sources = ["?", "push", "pull", "mixed", "cache", "discovery", "unread"];
  return { posts: (f[1] || []).map(Post), next: str(f, 2), source: sources[num(f, 3)] || "?" };
};
const FeedEvent = (b) => {
  const f = decode(b);
  return { post: u64(f, 1), author: u64(f, 2), resync: num(f, 4) === 1 };
};

// ---------- gRPC-Web ----------
class GrpcError extends Error {
  constructor(code, message) {
    super(`${message} (gRPC status ${code})`);
    this.code = code;
  }
}

function frame(msg) {
  const out = new Uint8Array(5 + msg.length);
  new DataView(out.buffer).setUint32(1, msg.length);
  out.set(msg, 5);
  return out;
}

// Splits complete frames off `buf`; returns [frames, rest]. A frame is { trailer, body }.
function frames(buf) {
  const out = [];
  let i = 0;
  while (buf.length - i >= 5) {
    const len = new DataView(buf.buffer, buf.byteOffset + i + 1, 4).getUint32(0);
    if (buf.length - i - 5 < len) break;
    out.push({ trailer: (buf[i] & 0x80) !== 0, body: buf.subarray(i + 5, i + 5 + len) });
    i += 5 + len;
  }
  return [out, buf.subarray(i)];
}

function checkStatus(headersOrTrailer) {
  const code = Number(headersOrTrailer["grpc-status"] ?? 0);
  if (code !== 0) throw new GrpcError(code, decodeURIComponent(headersOrTrailer["grpc-message"] || "error"));
}

function parseTrailer(body) {
  const t = {};
  for (const line of dec.decode(body).split("\r\n")) {
    const at = line.indexOf(":");
    if (at > 0) t[line.slice(0, at).trim().toLowerCase()] = line.slice(at + 1).trim();
  }
  return t;
}

const feedline = {
  token: "",
  base: "", // same origin: the page is served by the gRPC port it calls

  async call(path, msg, onMessage) {
    const headers = { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" };
    if (this.token) headers.authorization = "Bearer " + this.token;
    const resp = await fetch(this.base + "/feedline.v1." + path, { method: "POST", headers, body: frame(msg) });
    const early = {};
    for (const k of ["grpc-status", "grpc-message"]) if (resp.headers.get(k) !== null) early[k] = resp.headers.get(k);
    checkStatus(early);
    const reader = resp.body.getReader();
    let buf = new Uint8Array(0);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      const joined = new Uint8Array(buf.length + value.length);
      joined.set(buf);
      joined.set(value, buf.length);
      let got;
      [got, buf] = frames(joined);
      for (const f of got) {
        if (f.trailer) return checkStatus(parseTrailer(f.body));
        onMessage(f.body);
      }
    }
  },

  async unary(path, msg, parse) {
    let out;
    await this.call(path, msg, (b) => (out = parse(b)));
    return out;
  },
};

// ---------- the page ----------
const $ = (id) => document.getElementById(id);
let me = null; // { id, handle }
let stream = null;

function status(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

/// The user id inside a token: `v1.<base64url("u<id>:<exp>[:<iat>]")>.<mac>`.
function tokenUser(token) {
  const claims = token.split(".")[1] || "";
  const text = atob(claims.replace(/-/g, "+").replace(/_/g, "/"));
  const m = /^u(\d+):/.exec(text);
  if (!m) throw new Error("that token does not act as a user");
  return m[1];
}

async function signedIn(token) {
  feedline.token = token;
  const id = tokenUser(token);
  const u = await feedline.unary("UserService/GetUser", encode([[1, "u", id]]), User);
  me = u;
  $("who").textContent = `@${u.handle} (user ${u.id})`;
  $("token").value = token;
  $("app").hidden = false;
  await refresh();
  subscribe();
}

function renderPost(p, prepend) {
  if (document.querySelector(`[data-post="${p.id}"]`)) return;
  const li = document.createElement("li");
  li.dataset.post = p.id;
  li.textContent = `${p.text} — user ${p.author}`;
  const mark = document.createElement("button");
  mark.textContent = "mark read";
  mark.onclick = () => markRead(p.id);
  li.append(" ", mark);
  const list = $("feed");
  prepend ? list.prepend(li) : list.append(li);
}

async function refresh() {
  const page = await feedline.unary(
    "FeedService/GetHomeFeed",
    encode([[1, "u", me.id], [2, "u", 20]]),
    FeedPage,
  );
  $("feed").textContent = "";
  $("source").textContent = page.source;
  page.posts.forEach((p) => renderPost(p, false));
}

async function subscribe() {
  if (stream) return;
  stream = true;
  $("live").textContent = "live";
  try {
    await feedline.call("FeedService/SubscribeHomeFeed", encode([[1, "u", me.id]]), async (b) => {
      const ev = FeedEvent(b);
      if (ev.resync) return refresh();
      const p = await feedline.unary("PostService/GetPost", encode([[1, "u", me.id], [2, "u", ev.post]]), Post);
      renderPost(p, true);
    });
  } catch (e) {
    status("live feed: " + e.message, true);
  }
  stream = null;
  $("live").textContent = "reconnecting";
  setTimeout(() => me && subscribe(), 1000);
}

async function markRead(post) {
  await feedline.unary("FeedService/SetReadMarker", encode([[1, "u", me.id], [2, "u", post]]), () => null);
  status(`read up to post ${post}`);
}

function guard(fn) {
  return async (ev) => {
    ev.preventDefault();
    try {
      await fn();
    } catch (e) {
      status(e.message, true);
    }
  };
}

$("signup").onsubmit = guard(async () => {
  const handle = $("handle").value.trim();
  const r = await feedline.unary("UserService/CreateUser", encode([[1, "s", handle]]), (b) => {
    const f = decode(b);
    return { token: str(f, 2) };
  });
  await signedIn(r.token);
  status(`signed up as @${handle}`);
});

$("signin").onsubmit = guard(async () => {
  await signedIn($("token").value.trim());
  status("signed in");
});

$("follow").onsubmit = guard(async () => {
  const handle = $("followee").value.trim();
  const u = await feedline.unary("UserService/GetUserByHandle", encode([[1, "s", handle]]), User);
  await feedline.unary("UserService/Follow", encode([[1, "u", me.id], [2, "u", u.id]]), () => null);
  status(`following @${handle}`);
  await refresh();
});

$("publish").onsubmit = guard(async () => {
  const text = $("text").value;
  const p = await feedline.unary(
    "PostService/Publish",
    encode([[1, "u", me.id], [2, "u", 1], [3, "s", text]]),
    Post,
  );
  $("text").value = "";
  status(`published post ${p.id}`);
});

$("reload").onclick = guard(refresh);
