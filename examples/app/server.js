"use strict";

// Example express app used by the nginx module interop test and the
// multi-instance demo. Sessions are standard express-session sessions stored
// in Redis through connect-redis, so the nginx module can validate the
// signed `connect.sid` cookie and look the session up at the edge.

const express = require("express");
const session = require("express-session");
const RedisStore = require("connect-redis").default;
const { createClient } = require("redis");
const net = require("net");

const PORT = parseInt(process.env.PORT || "3000", 10);
const HOST = process.env.HOST || "127.0.0.1";
const INSTANCE_ID = process.env.INSTANCE_ID || `app-${PORT}`;
const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379";
const COOKIE_NAME = process.env.COOKIE_NAME || "connect.sid";
const SESSION_SECRETS = (process.env.SESSION_SECRET || "keyboard cat")
  .split(",")
  .map((s) => s.trim())
  .filter((s) => s.length > 0);
if (SESSION_SECRETS.length === 0) SESSION_SECRETS.push("keyboard cat");
// SESSION_ROLLING=1: express-session's `rolling` (every response renews the
// cookie; connect-redis then only EXPIREs the key, the stored
// cookie.expires stays at the last save).  SESSION_MAX_AGE_MS: cookie maxAge.
const SESSION_ROLLING = process.env.SESSION_ROLLING === "1";
const SESSION_MAX_AGE_MS = parseInt(process.env.SESSION_MAX_AGE_MS || "3600000", 10);

// ---------------------------------------------------------------- redis ---

// REDIS_SENTINELS=host:port,host:port,...: ask those Sentinels which node is
// master of REDIS_MASTER_NAME (default mymaster) before every (re)connect,
// instead of using REDIS_URL's host and port.  A failover (or a demotion:
// Sentinel then closes the clients' connections) drops the connection; the
// reconnect asks again and lands on the new master.
const REDIS_SENTINELS = (process.env.REDIS_SENTINELS || "")
  .split(",")
  .map((s) => s.trim())
  .filter((s) => s.length > 0)
  .map((s) => {
    const i = s.lastIndexOf(":");
    return { host: s.slice(0, i) || "127.0.0.1", port: parseInt(s.slice(i + 1), 10) };
  });
const REDIS_MASTER_NAME = process.env.REDIS_MASTER_NAME || "mymaster";

// The socket options object is read by node-redis at every connect, so
// setting its host/port before a reconnect moves the client.
const socketOptions = {
  // Keep retrying forever (capped back-off) so the app survives a Redis
  // that is down at start or restarts later.
  reconnectStrategy: (retries) => {
    if (REDIS_SENTINELS.length > 0) {
      findMaster(true).catch(() => {});
      return Math.min(50 + retries * 50, 500);
    }
    return Math.min(50 + retries * 100, 2000);
  },
};

// SENTINEL get-master-addr-by-name over a short-lived plain socket, one
// Sentinel after the other; resolves to {host, port} or rejects.
function askSentinel(s) {
  return new Promise((resolve, reject) => {
    const name = REDIS_MASTER_NAME;
    const sock = net.connect({ host: s.host, port: s.port });
    let buf = "";
    const done = (err, addr) => {
      sock.destroy();
      if (err) reject(err);
      else resolve(addr);
    };
    sock.setTimeout(500, () => done(new Error("timeout")));
    sock.on("error", (err) => done(err));
    sock.on("connect", () => {
      sock.write(
        "*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n" +
          `$${Buffer.byteLength(name)}\r\n${name}\r\n`
      );
    });
    sock.on("data", (d) => {
      buf += d.toString("latin1");
      if (/^\*-1\r\n/.test(buf) || /^-/.test(buf)) {
        return done(new Error(`no master "${name}" (${buf.trim()})`));
      }
      const m = /^\*2\r\n\$\d+\r\n([^\r]*)\r\n\$\d+\r\n(\d+)\r\n/.exec(buf);
      if (m) done(null, { host: m[1], port: parseInt(m[2], 10) });
    });
  });
}

// Where the next connect goes; true when that is a change.
function setMaster(addr, why) {
  if (addr.host === socketOptions.host && addr.port === socketOptions.port) return false;
  console.error(`app ${INSTANCE_ID}: master "${REDIS_MASTER_NAME}" is ${addr.host}:${addr.port}${why}`);
  socketOptions.host = addr.host;
  socketOptions.port = addr.port;
  return true;
}

// The Sentinel that answered last is asked first.  After a failed connect
// (doubted), one that names the same master again may be behind, as all
// but the leader are for a second or more of a failover: the next ones are
// asked before it is believed.
let finding = null;
let sentinelFirst = 0;
function findMaster(doubted) {
  if (finding) return finding;
  finding = (async () => {
    let lastErr = null;
    let same = null;
    for (let k = 0; k < REDIS_SENTINELS.length; k++) {
      const i = (sentinelFirst + k) % REDIS_SENTINELS.length;
      try {
        const addr = await askSentinel(REDIS_SENTINELS[i]);
        if (doubted && addr.host === socketOptions.host && addr.port === socketOptions.port) {
          same = same || addr;
          continue;
        }
        sentinelFirst = i;
        setMaster(addr, "");
        return addr;
      } catch (err) {
        lastErr = err;
      }
    }
    if (same) return same;
    throw lastErr || new Error("no sentinel");
  })().finally(() => {
    finding = null;
  });
  return finding;
}

// A master that moved while the old one still answers (SENTINEL FAILOVER,
// or a second failover right after the first) keeps this client's
// connection: the old master is only demoted seconds later, and sessions
// written there meanwhile are lost to everyone reading the new one, nginx
// first.  So, as nginx and Sentinel-aware clients do, one connection to a
// Sentinel at a time SUBSCRIBEs to +switch-master, and a switch moves the
// client at once.
let moving = null;
function moveTo(addr, why) {
  if (!setMaster(addr, why) || !redisClient.isReady || moving) return;
  // a reconnect under way takes the new address by itself
  moving = redisClient
    .disconnect()
    .catch(() => {})
    .then(() => (shuttingDown ? null : redisClient.connect()))
    .catch(() => {})
    .finally(() => {
      moving = null;
    });
}

// RESP arrays of bulk strings and integers, as SUBSCRIBE answers: each
// complete one is passed to onArray, the rest is returned
function respArrays(buf, onArray) {
  for (;;) {
    const m = /^\*(\d+)\r\n/.exec(buf);
    if (!m) return buf;
    let at = m[0].length;
    const items = [];
    for (let i = 0; i < parseInt(m[1], 10); i++) {
      const e = buf.indexOf("\r\n", at);
      if (e < 0) return buf;
      const head = buf.slice(at, e);
      if (head[0] === "$") {
        const len = parseInt(head.slice(1), 10);
        if (buf.length < e + 2 + len + 2) return buf;
        items.push(buf.slice(e + 2, e + 2 + len));
        at = e + 2 + len + 2;
      } else {
        items.push(head.slice(1));
        at = e + 2;
      }
    }
    onArray(items);
    buf = buf.slice(at);
  }
}

let watchSock = null;
function watchSentinels(next) {
  if (shuttingDown) return;
  const s = REDIS_SENTINELS[next % REDIS_SENTINELS.length];
  const sock = net.connect({ host: s.host, port: s.port });
  watchSock = sock;
  let buf = "";
  let subscribed = false;
  let over = false;
  const lost = () => {
    if (over) return;
    over = true;
    sock.destroy();
    // the next Sentinel, at once after a working watch, else in 500 ms
    if (!shuttingDown) setTimeout(() => watchSentinels(next + 1), subscribed ? 0 : 500).unref();
  };
  sock.setTimeout(1000, () => subscribed || lost());
  sock.on("error", lost);
  sock.on("close", lost);
  sock.on("connect", () => {
    sock.setKeepAlive(true, 1000); // a Sentinel host gone silent is noticed
    sock.write("*2\r\n$9\r\nSUBSCRIBE\r\n$14\r\n+switch-master\r\n");
  });
  sock.on("data", (d) => {
    buf = respArrays(buf + d.toString("latin1"), (a) => {
      if (a[0] === "subscribe") {
        subscribed = true;
        sock.setTimeout(0);
        // a switch while nobody watched is caught by asking once more
        findMaster().then((addr) => moveTo(addr, " (asked after subscribing)"), () => {});
        return;
      }
      if (a[0] !== "message" || a[1] !== "+switch-master") return;
      // "<name> <old ip> <old port> <new ip> <new port>"
      const f = (a[2] || "").split(" ");
      if (f.length === 5 && f[0] === REDIS_MASTER_NAME) {
        moveTo({ host: f[3], port: parseInt(f[4], 10) }, ` (+switch-master from Sentinel ${s.host}:${s.port})`);
      }
    });
    if (/^-/.test(buf)) lost();
  });
}

const redisClient = createClient(
  REDIS_SENTINELS.length > 0 ? { socket: socketOptions } : { url: REDIS_URL, socket: socketOptions }
);

let redisReady = false;
let redisErrorLogged = false;
let shuttingDown = false;

const store = new RedisStore({ client: redisClient, prefix: "sess:" });

redisClient.on("ready", () => {
  redisReady = true;
  if (redisErrorLogged) console.error(`app ${INSTANCE_ID}: redis connected`);
  redisErrorLogged = false;
  store.emit("connect"); // lets express-session use the store again
});
redisClient.on("error", (err) => {
  // Must be handled, otherwise the client's error event crashes the process.
  // Log only once per outage.
  if (!redisErrorLogged && !shuttingDown) {
    console.error(`app ${INSTANCE_ID}: redis unavailable (${err.message}), retrying`);
    redisErrorLogged = true;
  }
  markRedisDown();
});
redisClient.on("reconnecting", markRedisDown);
redisClient.on("end", markRedisDown);

function markRedisDown() {
  if (redisReady) {
    redisReady = false;
    store.emit("disconnect"); // express-session then skips the store
  }
}

// ------------------------------------------------------------------ app ---

const app = express();
app.set("trust proxy", 1);
app.disable("x-powered-by");

app.use((req, res, next) => {
  res.set("X-Instance-Id", INSTANCE_ID);
  next();
});

const sessionMiddleware = session({
  name: COOKIE_NAME,
  secret: SESSION_SECRETS.length === 1 ? SESSION_SECRETS[0] : SESSION_SECRETS,
  store,
  resave: false,
  saveUninitialized: false,
  rolling: SESSION_ROLLING,
  cookie: { httpOnly: true, maxAge: SESSION_MAX_AGE_MS },
});
// express-session assumes the store is ready until it sees "disconnect";
// the client is not connected yet, so say so (listeners are now attached).
store.emit("disconnect");

app.use(express.json({ limit: "16kb" }));
app.use(express.urlencoded({ extended: false, limit: "16kb" }));
app.use(sessionMiddleware);

function requireSession(req, res, next) {
  if (!req.session) {
    return res
      .status(503)
      .json({ instance: INSTANCE_ID, error: "session store unavailable" });
  }
  next();
}

const USER_RE = /^[A-Za-z0-9._@-]{1,64}$/;

app.post("/api/login", requireSession, (req, res, next) => {
  const raw =
    (req.body && typeof req.body.user === "string" && req.body.user) ||
    (typeof req.query.user === "string" && req.query.user) ||
    "";
  const id = raw.trim();
  if (!USER_RE.test(id)) {
    return res
      .status(400)
      .json({ instance: INSTANCE_ID, error: "missing or invalid user" });
  }
  const user = {
    id,
    name: id.charAt(0).toUpperCase() + id.slice(1),
    roles: ["user"],
  };
  // New session id on login (prevents session fixation).
  req.session.regenerate((err) => {
    if (err) return next(err);
    req.session.user = user;
    req.session.save((err2) => {
      if (err2) return next(err2);
      res.json({ instance: INSTANCE_ID, user });
    });
  });
});

app.post("/api/logout", requireSession, (req, res, next) => {
  const had = !!(req.session && req.session.user);
  req.session.destroy((err) => {
    if (err) return next(err);
    res.clearCookie(COOKIE_NAME, { path: "/", httpOnly: true });
    res.json({ instance: INSTANCE_ID, ok: true, logged_out: had });
  });
});

app.get("/api/profile", (req, res) => {
  const xUserId = req.get("x-user-id");
  const xUserName = req.get("x-user-name");
  res.json({
    instance: INSTANCE_ID,
    user: xUserId || null,
    session_user:
      req.session && req.session.user ? req.session.user.id || null : null,
    headers: {
      "x-user-id": xUserId || null,
      "x-user-name": xUserName || null,
    },
  });
});

app.get(["/api/test", "/api/data"], (req, res) => {
  res.json({ instance: INSTANCE_ID, ok: true });
});

// ------------------------------------------------- query caching demo ---
// A slow endpoint that counts its fetches, for cache_redis: every GET takes
// ~200 ms (a "database query") and bumps a counter kept in Redis, so the
// count covers every app instance. A POST to the same URL is a write: it
// bumps the item's version, which the next fresh GET shows.
//   GET  /api/slow/:name          200 JSON after SLOW_MS, Cache-Control: max-age=60
//   POST /api/slow/:name          200 {"version": n}
//   GET  /api/slow/:name/fetches  how many GETs of :name reached the apps
const SLOW_MS = parseInt(process.env.SLOW_MS || "200", 10);

app.get("/api/slow/:name/fetches", async (req, res) => {
  if (!redisReady) return res.status(503).json({ error: "redis unavailable" });
  const n = await redisClient.get(`demo:fetches:${req.params.name}`);
  res.set("Cache-Control", "no-store").json({ fetches: parseInt(n || "0", 10) });
});

app.get("/api/slow/:name", async (req, res) => {
  const name = req.params.name;
  let fetch = null;
  let version = 0;
  if (redisReady) {
    fetch = await redisClient.incr(`demo:fetches:${name}`);
    version = parseInt((await redisClient.get(`demo:version:${name}`)) || "0", 10);
  }
  await new Promise((resolve) => setTimeout(resolve, SLOW_MS));
  res.set("Cache-Control", "max-age=60").json({
    name,
    version,
    fetch,
    user: req.get("x-user-id") || null,
    instance: INSTANCE_ID,
    at: new Date().toISOString(),
  });
});

app.post("/api/slow/:name", async (req, res) => {
  if (!redisReady) return res.status(503).json({ error: "redis unavailable" });
  const version = await redisClient.incr(`demo:version:${req.params.name}`);
  res.json({ name: req.params.name, version, instance: INSTANCE_ID });
});
// ------------------------------------------------ end query caching demo ---

app.get(["/api/health", "/healthz"], (req, res) => {
  res.json({ status: "ok", instance: INSTANCE_ID });
});

app.get("/", (req, res) => {
  res.type("text/plain").send(`Hello from ${INSTANCE_ID}\n`);
});

app.use((req, res) => {
  res.status(404).json({ instance: INSTANCE_ID, error: "not found" });
});

// eslint-disable-next-line no-unused-vars
app.use((err, req, res, next) => {
  const status = err.status || err.statusCode || 500;
  if (status >= 500) console.error(`app ${INSTANCE_ID}: ${err.stack || err}`);
  res
    .status(status)
    .json({ instance: INSTANCE_ID, error: status >= 500 ? "internal error" : err.message });
});

// ---------------------------------------------------------------- start ---

// With Sentinels: no connect before one of them named the master (retried
// every 500 ms, logged once).
async function firstMaster() {
  for (let logged = false; !shuttingDown; ) {
    try {
      return await findMaster();
    } catch (err) {
      if (!logged) console.error(`app ${INSTANCE_ID}: no Sentinel answered (${err.message}), retrying`);
      logged = true;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

if (REDIS_SENTINELS.length > 0) watchSentinels(0);

(REDIS_SENTINELS.length > 0 ? firstMaster() : Promise.resolve())
  .then(() => redisClient.connect())
  .catch(() => {
    // The initial connect failed; the "error" handler already logged it and
    // the client keeps reconnecting according to reconnectStrategy.
  });

const server = app.listen(PORT, HOST, () => {
  console.log(`app ${INSTANCE_ID} listening on ${HOST}:${PORT}`);
});
server.on("error", (err) => {
  console.error(`app ${INSTANCE_ID}: ${err.message}`);
  process.exit(1);
});

function shutdown() {
  if (shuttingDown) return;
  shuttingDown = true;
  // Hard deadline: always exit 0 well within 2 s.
  setTimeout(() => process.exit(0), 1500).unref();

  const serverClosed = new Promise((resolve) => server.close(() => resolve()));
  if (typeof server.closeIdleConnections === "function") {
    server.closeIdleConnections();
  }
  // Give in-flight requests a moment, then drop remaining keep-alive sockets.
  setTimeout(() => {
    if (typeof server.closeAllConnections === "function") {
      server.closeAllConnections();
    }
  }, 500).unref();

  if (watchSock) watchSock.destroy();
  let redisClosed;
  try {
    redisClosed = redisClient.isReady ? redisClient.quit() : redisClient.disconnect();
  } catch (e) {
    redisClosed = null;
  }
  const done = () => process.exit(0);
  Promise.all([Promise.resolve(redisClosed).catch(() => {}), serverClosed]).then(done, done);
}

process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
