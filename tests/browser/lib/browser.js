// Headless Chromium (Debian's, no browser download) and what the tests do on the
// chat page. Every wait is on something the page shows (Playwright's waits on
// selectors and functions), never a fixed sleep.

import assert from 'node:assert/strict';
import {mkdirSync} from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {chromium} from 'playwright-core';

export const ARTIFACTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'artifacts');
export const DESKTOP = {width: 1000, height: 700};
export const PHONE = {width: 360, height: 740};
const WAIT_MS = 15_000;

export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/**
 * A page of its own browser context (its own localStorage: one user's browser).
 * Uncaught exceptions and Content-Security-Policy refusals are collected in
 * `page.problems`; tests end with assertNoProblems.
 */
export async function newPage(browser, {viewport = DESKTOP} = {}) {
  const context = await browser.newContext({viewport});
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.problems = [];
  page.on('pageerror', (error) => page.problems.push(`uncaught: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy|Refused to/i.test(message.text())) {
      page.problems.push(`console: ${message.text()}`);
    }
  });
  return page;
}

/** Opens `/?me=…&peer=…` (more query in `extra`), and waits for the connection when `connected`. */
export async function openChat(browser, baseUrl, me, peer, {viewport, connected = true, extra = ''} = {}) {
  const page = await newPage(browser, {viewport});
  await page.goto(`${baseUrl}/?me=${encodeURIComponent(me)}&peer=${encodeURIComponent(peer)}${extra}`);
  if (connected) await waitConnected(page);
  return page;
}

export function waitConnected(page) {
  return page.waitForSelector('#connection[data-connection="open"]');
}

export async function assertNoProblems(...pages) {
  for (const page of pages) assert.deepEqual(page.problems, [], 'the page logged errors');
}

/** Types `text` into the composer and presses Enter, as a user does. */
export async function send(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

/** The texts of the message list, top to bottom. */
export function messageTexts(page) {
  return page.$$eval('#messages .message .text', (nodes) => nodes.map((node) => node.textContent));
}

/** Waits until a message with exactly this text is in the list. */
export function waitForMessage(page, text) {
  return page.waitForFunction(
    (wanted) => [...document.querySelectorAll('#messages .message .text')].some((node) => node.textContent === wanted),
    text,
  );
}

/** Waits until the own message with this text shows `state` (sending, sent, read, failed, or a list of them). */
export function waitForState(page, text, state) {
  return page.waitForFunction(
    ([wanted, states]) =>
      [...document.querySelectorAll('#messages .message.mine')].some(
        (node) => node.querySelector('.text').textContent === wanted && states.includes(node.dataset.state),
      ),
    [text, [state].flat()],
  );
}

/** Waits until `selector`'s text contains `text`. */
export function waitForText(page, selector, text) {
  return page.waitForFunction(
    ([css, wanted]) => document.querySelector(css)?.textContent.includes(wanted),
    [selector, text],
  );
}

/**
 * From now on, records in the page every state each own message goes through, in
 * order (read with statesOf), and the most copies of each text the list ever held
 * at once (read with mostCopies). A mutation observer sees each change of
 * data-state with the value before it, so a state that lasted a moment is not
 * missed, and each batch of changes is counted before the page paints it.
 */
export function watchMessages(page) {
  return page.evaluate(() => {
    const states = (window.stateLog = {});
    const copies = (window.mostCopies = {});
    const note = (text, state) => {
      const seen = (states[text] ??= []);
      if (state && seen.at(-1) !== state) seen.push(state);
    };
    const observer = new MutationObserver((records) => {
      for (const record of records) {
        if (record.type === 'attributes') note(record.target.querySelector('.text').textContent, record.oldValue);
      }
      const counts = {};
      for (const li of document.querySelectorAll('#messages .message')) {
        const text = li.querySelector('.text').textContent;
        counts[text] = (counts[text] ?? 0) + 1;
        if (li.classList.contains('mine')) note(text, li.dataset.state);
      }
      for (const [text, count] of Object.entries(counts)) copies[text] = Math.max(copies[text] ?? 0, count);
    });
    observer.observe(document.getElementById('messages'), {
      subtree: true,
      childList: true,
      attributes: true,
      attributeFilter: ['data-state'],
      attributeOldValue: true,
    });
  });
}

export function statesOf(page, text) {
  return page.evaluate((wanted) => window.stateLog?.[wanted] ?? [], text);
}

/** text -> the most copies of it the list held at once, since watchMessages. */
export function mostCopies(page) {
  return page.evaluate(() => window.mostCopies ?? {});
}

export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, {recursive: true});
  await page.screenshot({path: path.join(ARTIFACTS, `${name}.png`)});
}
