// End-to-end: a real `estgate serve --demo` whose mail goes over SMTP to a real SMTP server
// on loopback (smtp-server), and Debian's Chromium driven by playwright-core through both
// self-enrollment flows. Every downloaded .p12 is opened by OpenSSL with the password typed
// in the form. Screenshots of each page land in $E2E_SCREENSHOTS (default ./screenshots).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import net from "node:net";
import { SMTPServer } from "smtp-server";
import { simpleParser } from "mailparser";
import { chromium } from "playwright-core";

const here = path.dirname(new URL(import.meta.url).pathname);
const BIN = process.env.ESTGATE_BIN || path.join(here, "..", "target", "debug", "estgate");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = path.resolve(process.env.E2E_SCREENSHOTS || path.join(here, "screenshots"));

const work = mkdtempSync(path.join(tmpdir(), "estgate-e2e-"));
const dataDir = path.join(work, "data");
const inbox = [];
let smtp, server, serverLog = "", browser, demo, httpPort;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function startSmtp() {
  return new Promise((resolve) => {
    const s = new SMTPServer({
      authOptional: true,
      disabledCommands: ["STARTTLS", "AUTH"],
      logger: false,
      onData(stream, _session, done) {
        simpleParser(stream)
          .then((mail) => {
            inbox.push(mail);
            done();
          })
          .catch(done);
      },
    });
    s.listen(0, "127.0.0.1", () => resolve(s));
  });
}

async function waitForMail(to, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const found = inbox.find((m) => (m.to?.text || "").includes(to));
    if (found) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no email to ${to} within ${timeoutMs} ms; server log:\n${serverLog}`);
}

function startServer(port, smtpPort, httpPort) {
  return new Promise((resolve, reject) => {
    const child = spawn(
      BIN,
      ["serve", "--demo", "--data-dir", dataDir, "--listen", `127.0.0.1:${port}`],
      {
        env: {
          ...process.env,
          ESTGATE_SMTP_HOST: "127.0.0.1",
          ESTGATE_SMTP_PORT: String(smtpPort),
          ESTGATE_SMTP_TLS: "none",
          ESTGATE_MAIL_FROM: "Example PKI <pki@example.org>",
          ESTGATE_LOG: "info",
          ESTGATE_HTTP_LISTEN: `127.0.0.1:${httpPort}`,
        },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${serverLog}`)), 30000);
    const onData = (d) => {
      serverLog += d.toString();
      if (serverLog.includes("estgate listening on")) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("exit", (code) => reject(new Error(`server exited (${code}):\n${serverLog}`)));
  });
}

// demo-credentials.toml: enroll_url and [[accounts]] tables of label/username/password.
function readDemo() {
  const text = readFileSync(path.join(dataDir, "demo-credentials.toml"), "utf8");
  const enrollUrl = /^enroll_url = "(.*)"$/m.exec(text)[1];
  const accounts = {};
  for (const block of text.split("[[accounts]]").slice(1)) {
    const get = (k) => new RegExp(`^${k} = "(.*)"$`, "m").exec(block)[1];
    accounts[get("label")] = { username: get("username"), password: get("password") };
  }
  return { enrollUrl, accounts };
}

function openssl(args) {
  return execFileSync("openssl", args, { cwd: work, encoding: "utf8" });
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

async function newPage(options = {}) {
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    acceptDownloads: true,
    viewport: { width: 900, height: 900 },
    ...options,
  });
  return context.newPage();
}

// The certificate in a .p12, checked by OpenSSL: the password opens it, the chain verifies.
function checkP12(file, password, expectCn) {
  const pass = `pass:${password}`;
  const leaf = openssl(["pkcs12", "-in", file, "-passin", pass, "-nokeys", "-clcerts"]);
  writeFileSync(path.join(work, "leaf.pem"), leaf);
  const chain = openssl(["pkcs12", "-in", file, "-passin", pass, "-nokeys", "-cacerts"]);
  writeFileSync(path.join(work, "chain.pem"), chain);
  const subject = openssl(["x509", "-in", "leaf.pem", "-noout", "-subject", "-ext", "subjectAltName"]);
  assert.match(subject, new RegExp(`CN ?= ?${expectCn}`));
  const verify = openssl([
    "verify", "-CAfile", path.join(dataDir, "ca.pem"), "-untrusted", "chain.pem",
    "-purpose", "smimesign", "leaf.pem",
  ]);
  assert.match(verify, /leaf\.pem: OK/);
  const key = openssl(["pkcs12", "-in", file, "-passin", pass, "-nocerts", "-nodes"]);
  writeFileSync(path.join(work, "leaf.key"), key);
  assert.equal(
    openssl(["pkey", "-in", "leaf.key", "-pubout"]),
    openssl(["x509", "-in", "leaf.pem", "-pubkey", "-noout"]),
    "the key in the file is the certificate's",
  );
  const wrong = spawnSync("openssl", ["pkcs12", "-in", file, "-passin", "pass:not-the-password", "-nokeys"], { cwd: work });
  assert.notEqual(wrong.status, 0, "a wrong password does not open the file");
  return subject;
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  smtp = await startSmtp();
  const port = await freePort();
  httpPort = await freePort();
  server = await startServer(port, smtp.server.address().port, httpPort);
  demo = readDemo();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
  server?.kill("SIGINT");
  await new Promise((r) => smtp?.close(r) ?? r());
  rmSync(work, { recursive: true, force: true });
});

test("secret ID: sign in, pick the listed account, fix the form, download the .p12", async () => {
  const page = await newPage();
  const staff = demo.accounts.staff;
  await page.goto(demo.enrollUrl);
  await page.getByRole("heading", { name: "Request a certificate" }).waitFor();
  assert.ok(await page.getByText("we will send you a one-time link to authenticate").isVisible());
  await shot(page, "01-sign-in");

  await page.fill("#sid-email", staff.username);
  await page.fill("#sid-secret", staff.password);
  const toggle = page.locator('[data-toggle-secret="sid-secret"]');
  await toggle.click();
  assert.equal(await page.getAttribute("#sid-secret", "type"), "text", "show/hide toggle");
  await toggle.click();
  assert.equal(await page.getAttribute("#sid-secret", "type"), "password");
  await page.getByRole("button", { name: "Sign in" }).click();

  await page.waitForURL(/\/account$/);
  await page.getByLabel("Staff").check();
  await shot(page, "02-account");
  await page.getByRole("button", { name: "Continue with this account" }).click();

  await page.waitForURL(/\/form$/);
  // A person on record: the names are the record's, shown and not editable.
  assert.equal(await page.locator("#first-name, #middle-name, #last-name").count(), 0, "names on record are not editable");
  assert.ok(await page.getByText("ask your administrator to correct it").isVisible());
  assert.equal(await page.inputValue("#key-type"), "rsa-2048", "RSA-2048 by default");
  await shot(page, "03-form");

  // Mismatched passwords and no EULA: errors next to the fields, choices kept, passwords not.
  await page.fill("#password", "first password typed");
  await page.fill("#password-confirmation", "another password");
  await page.getByRole("button", { name: "Request certificate" }).click();
  await page.getByText("the two passwords differ").waitFor();
  assert.ok(await page.getByText("you must accept the agreement").isVisible());
  assert.equal(await page.inputValue("#password"), "");
  await shot(page, "04-form-errors");

  const password = "correct horse battery staple";
  await page.fill("#password", password);
  await page.fill("#password-confirmation", password);
  await page.selectOption("#term", "2");
  await page.getByLabel("I have read and accept the agreement").check();
  const downloadP = page.waitForEvent("download");
  await page.getByRole("button", { name: "Request certificate" }).click();
  const download = await downloadP;
  assert.equal(download.suggestedFilename(), "alice@example.org.p12");
  const file = path.join(work, "alice.p12");
  await download.saveAs(file);
  await page.getByRole("heading", { name: "Your certificate is ready" }).waitFor();
  await shot(page, "05-issued");
  const subject = checkP12(file, password, "Alice Example");
  assert.match(subject, /email:alice@example\.org/);
  const dates = openssl(["x509", "-in", "leaf.pem", "-noout", "-startdate", "-enddate"]);
  const [start, end] = dates.trim().split("\n").map((l) => new Date(l.split("=")[1]));
  const days = (end - start) / 86400000;
  assert.ok(days >= 730 && days <= 731, `two-year term: ${days} days`);

  await page.getByRole("link", { name: "My certificates" }).first().click();
  await page.getByRole("heading", { name: "My certificates" }).waitFor();
  const serial = openssl(["x509", "-in", "leaf.pem", "-noout", "-serial"]).trim().split("=")[1];
  assert.ok((await page.content()).includes(serial), "the new serial is listed");
  await shot(page, "06-certificates");

  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Request a certificate" }).waitFor();
  await page.close();
});

test("a person revokes their own certificate; OCSP then says revoked", async () => {
  // The certificate the previous test downloaded.
  writeFileSync(path.join(work, "own.pem"), readFileSync(path.join(work, "leaf.pem")));
  const serial = openssl(["x509", "-in", "own.pem", "-noout", "-serial"]).trim().split("=")[1];
  const issuing = execFileSync("curl", ["-s", "--max-time", "10", `http://127.0.0.1:${httpPort}/ca.cer`]);
  writeFileSync(path.join(work, "issuing.der"), issuing);
  openssl(["x509", "-inform", "DER", "-in", "issuing.der", "-out", "issuing.pem"]);
  const ocsp = () => spawnSync("openssl", [
    "ocsp", "-issuer", "issuing.pem", "-cert", "own.pem",
    "-url", `http://127.0.0.1:${httpPort}/ocsp`, "-CAfile", path.join(dataDir, "ca.pem"),
  ], { cwd: work, encoding: "utf8" });
  assert.match(ocsp().stdout, /own\.pem: good/);

  const page = await newPage();
  const staff = demo.accounts.staff;
  await page.goto(demo.enrollUrl);
  await page.fill("#sid-email", staff.username);
  await page.fill("#sid-secret", staff.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/account$/);
  await page.getByRole("link", { name: "My certificates" }).first().click();
  await page.getByRole("heading", { name: "My certificates" }).waitFor();
  await page.getByRole("button", { name: `Revoke certificate ${serial}` }).click();
  await page.getByRole("heading", { name: "Revoke certificate" }).waitFor();
  assert.ok(await page.getByText("This cannot be undone.").isVisible());
  await page.locator('input[name="reason"][value="keyCompromise"]').check();
  await shot(page, "06b-revoke-confirm");
  await page.getByRole("button", { name: "Revoke this certificate" }).click();
  await page.getByRole("heading", { name: "Certificate revoked" }).waitFor();
  await shot(page, "06c-revoked");

  const after = ocsp();
  assert.match(after.stdout, /own\.pem: revoked/, after.stdout + after.stderr);
  assert.match(after.stdout, /keyCompromise/);
  assert.match(after.stdout + after.stderr, /Response verify OK/);
  await page.close();
});

test("approval: the request waits, the CLI approves, the emailed link leads back to the .p12", async () => {
  // The audit trail records CLI changes as cli:<operator>.
  const cli = (...args) => execFileSync(BIN, ["--data-dir", dataDir, ...args],
    { encoding: "utf8", env: { ...process.env, ESTGATE_OPERATOR: "e2e" } });
  cli("profile", "add", "held", "--subject", "person", "--requires-approval",
    "--smime-type", "sponsor", "--terms", "1", "--key-types", "ec-p256,rsa-2048");
  cli("account", "add", "Held", "--org", "Example Organisation", "--endpoint", "Example self-enrollment",
    "--profile", "held", "--authorization", "access-code", "--access-code", "held-code-12345",
    "--csr-method", "server", "--label", "held");
  const staff = demo.accounts.staff;
  const password = "approved and collected";
  const request = async (page) => {
    await page.fill("#sid-email", staff.username);
    await page.fill("#sid-secret", staff.password);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForURL(/\/account$/);
    await page.fill("#access-code", "held-code-12345");
    await page.getByRole("button", { name: "Continue with this code" }).click();
    await page.waitForURL(/\/form$/);
    await page.fill("#password", password);
    await page.fill("#password-confirmation", password);
    await page.getByLabel("I have read and accept the agreement").check();
  };

  const page = await newPage();
  await page.goto(demo.enrollUrl);
  await request(page);
  await page.getByRole("button", { name: "Request certificate" }).click();
  await page.getByText("needs an administrator's approval").waitFor();
  await shot(page, "06d-pending");
  const pending = cli("order", "list", "--pending").trim().split("\n").slice(1);
  assert.equal(pending.length, 1, pending.join("\n"));
  const id = pending[0].trim().split(/\s+/)[0];
  cli("order", "approve", id);
  await page.close();

  // The person is mailed that the request was approved, with the way back to the form.
  const deadline = Date.now() + 20000;
  let mail;
  while (!mail && Date.now() < deadline) {
    mail = inbox.find((m) => (m.to?.text || "").includes(staff.username) && /approved/i.test(m.subject || ""));
    if (!mail) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(mail, `no approval email; server log:\n${serverLog}`);
  const link = /https?:\/\/\S+\/enroll\/[0-9A-Za-z]+/.exec(mail.text)[0];

  const back = await newPage();
  await back.goto(link);
  await request(back);
  const downloadP = back.waitForEvent("download");
  await back.getByRole("button", { name: "Request certificate" }).click();
  const download = await downloadP;
  const file = path.join(work, "held.p12");
  await download.saveAs(file);
  await back.getByRole("heading", { name: "Your certificate is ready" }).waitFor();
  checkP12(file, password, "Alice");
  const listed = cli("order", "list");
  assert.match(listed, new RegExp(`^${id}\\s+issued`, "m"), listed);
  await back.close();
});

test("email confirmation: the mailed link, an access code, a new person, legacy .p12", async () => {
  const page = await newPage();
  const visitors = demo.accounts.visitors;
  const email = "newcomer@example.org";
  await page.goto(demo.enrollUrl);
  await page.fill("#ec-email", "someone@elsewhere.example.com");
  await page.getByRole("button", { name: "Send me a link" }).click();
  await page.getByText("use an address at example.org").waitFor();
  await page.fill("#ec-email", email);
  await page.getByRole("button", { name: "Send me a link" }).click();
  await page.getByRole("heading", { name: "Check your email" }).waitFor();
  await shot(page, "07-check-email");

  const mail = await waitForMail(email);
  assert.equal(mail.subject, "Your Email Confirmation Request");
  assert.ok(mail.html, "an HTML part");
  assert.ok(mail.text, "a text part");
  const link = /https:\/\/\S+\/confirm\?token=[A-Za-z0-9]+/.exec(mail.text)[0];
  assert.ok(mail.html.includes(link.replace(/&/g, "&amp;")), "the same link in the HTML part");

  await page.goto(link);
  await page.getByRole("heading", { name: "Confirm your email address" }).waitFor();
  await shot(page, "08-confirm");
  await page.getByRole("button", { name: `Continue as ${email}` }).click();
  await page.waitForURL(/\/account$/);
  assert.ok(await page.getByText("No account is listed for you").isVisible(), "not on record: no list");
  await page.fill("#access-code", "wrong-code");
  await page.getByRole("button", { name: "Continue with this code" }).click();
  await page.getByText("this access code is not valid here").waitFor();
  await page.fill("#access-code", visitors.password);
  await shot(page, "09-access-code");
  await page.getByRole("button", { name: "Continue with this code" }).click();

  await page.waitForURL(/\/form$/);
  assert.equal(await page.inputValue("#first-name"), "", "a new person types their names");
  await page.fill("#first-name", "Nina");
  await page.fill("#last-name", "Newcomer");
  const password = "another long passphrase";
  await page.fill("#password", password);
  await page.fill("#password-confirmation", password);
  await page.getByLabel(/Legacy compatibility/).check();
  await page.getByLabel("I have read and accept the agreement").check();
  const downloadP = page.waitForEvent("download");
  await page.getByRole("button", { name: "Request certificate" }).click();
  const download = await downloadP;
  assert.equal(download.suggestedFilename(), `${email}.p12`);
  const file = path.join(work, "nina.p12");
  await download.saveAs(file);
  await page.getByRole("heading", { name: "Your certificate is ready" }).waitFor();
  await shot(page, "10-issued-legacy");
  checkP12(file, password, "Nina Newcomer");
  // `-info` reports the algorithms on stderr.
  const info = spawnSync("openssl", ["pkcs12", "-in", file, "-passin", `pass:${password}`, "-info", "-noout"], {
    cwd: work, encoding: "utf8",
  });
  assert.equal(info.status, 0, info.stderr);
  assert.match(info.stderr, /TripleDES/i, "legacy 3DES encryption");
  assert.match(info.stderr, /MAC: sha1/i, "legacy SHA-1 MAC");

  // The link was for one use.
  const again = await newPage();
  await again.goto(link);
  await again.getByText("already been used").waitFor();
  assert.equal(await again.getByRole("button", { name: "Continue" }).count(), 0);
  await shot(again, "11-link-used");
  await again.close();
  await page.close();
});

test("on a phone, without JavaScript, by keyboard: the form works and the download button delivers", async () => {
  const page = await newPage({ javaScriptEnabled: false, viewport: { width: 390, height: 844 }, isMobile: true });
  const staff = demo.accounts.staff;
  await page.goto(demo.enrollUrl);
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 390, `no sideways scrolling on a phone (${width}px)`);
  assert.equal(await page.locator('[data-toggle-secret="sid-secret"]').isVisible(), false, "no dead toggle without JS");
  // Keyboard only: the labelled fields take focus and Enter submits.
  assert.equal(await page.locator('label[for="sid-secret"]').innerText(), "Secret ID");
  await page.locator("#sid-secret").focus();
  await page.keyboard.type(staff.password);
  await page.keyboard.press("Shift+Tab");
  await page.keyboard.type(staff.username);
  await shot(page, "12-phone-sign-in");
  await page.locator("#sid-secret").press("Enter");
  await page.waitForURL(/\/account$/);
  await page.getByRole("button", { name: "Continue with this account" }).press("Enter");
  await page.waitForURL(/\/form$/);
  await shot(page, "13-phone-form");
  const password = "no script needed here";
  await page.selectOption("#key-type", "ec-p256");
  await page.fill("#password", password);
  await page.fill("#password-confirmation", password);
  await page.getByLabel("I have read and accept the agreement").check();
  await page.getByRole("button", { name: "Request certificate" }).click();
  await page.getByRole("heading", { name: "Your certificate is ready" }).waitFor();
  const downloadP = page.waitForEvent("download");
  await page.getByRole("link", { name: /Download alice@example\.org\.p12/ }).click();
  const download = await downloadP;
  const file = path.join(work, "alice-nojs.p12");
  await download.saveAs(file);
  checkP12(file, password, "Alice");
  await page.close();
});
