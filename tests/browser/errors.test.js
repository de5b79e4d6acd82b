// What the page tells the user when chatd refuses: an unknown user (4404), the
// directory unreachable (1013), sign-in needed or refused (4401, 4403), a message
// too long, sending past the rate limit. Each test runs the chatd it needs.

import assert from 'node:assert/strict';
import {after, before, test} from 'node:test';
import {
  assertNoProblems, launchBrowser, messageTexts, newPage, openChat, screenshot, send,
  waitConnected, waitForMessage, waitForState, waitForText,
} from './lib/browser.js';
import {Chatd, UserSearchStub} from './lib/processes.js';
import {makeToken} from './lib/tokens.js';

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

/** Runs `body` with a chatd started with `options`, and stops it (exit code 0) after. */
async function withChatd(options, body) {
  const chatd = await Chatd.start(options);
  try {
    await body(chatd);
  } finally {
    await chatd.stop();
    chatd.removeData();
  }
}

const focusedId = (page) => page.evaluate(() => document.activeElement?.id);

test('an unknown user: the page says the user does not exist, and the form fixes it', async () => {
  const stub = await UserSearchStub.start(['nobody']);
  try {
    await withChatd({args: ['--user-search-url', stub.url]}, async (chatd) => {
      const page = await openChat(browser, chatd.url, 'alice', 'nobody', {connected: false});
      await waitForText(page, '#alert-text', 'The user “nobody” does not exist.');
      await page.waitForSelector('#join:not([hidden])');
      await page.waitForSelector('#connection[data-connection="stopped"]');
      assert.equal(await focusedId(page), 'peer');
      await screenshot(page, 'unknown-user');

      await page.fill('#peer', 'bob');
      await page.click('#join button[type="submit"]');
      await waitConnected(page);
      await page.waitForSelector('#alert', {state: 'hidden'});
      await assertNoProblems(page);
      await page.context().close();
    });
  } finally {
    await stub.stop();
  }
});

test('the user directory unreachable: "unavailable", and the page keeps trying', async () => {
  // Nothing listens on port 9 of the loopback: every lookup is refused, so chatd
  // closes each connection with 1013 (try again later).
  const options = {args: ['--user-search-url', 'http://127.0.0.1:9/user/soap']};
  await withChatd(options, async (chatd) => {
    const page = await newPage(browser);
    let attempts = 0;
    page.on('websocket', () => (attempts += 1));
    await page.goto(`${chatd.url}/?me=alice&peer=bob`);
    await waitForText(page, '#alert-text', 'The chat service is unavailable right now');
    await page.waitForSelector('#connection[data-connection="waiting"]');
    await page.waitForSelector('#alert-retry:not([hidden])');
    await screenshot(page, 'unavailable');
    // The backoff brings a second attempt by itself.
    await waitForAttempts(page, () => attempts, 2);
    await page.context().close();
  });
});

/** Waits until the page opened `count` WebSockets (each one an event). */
async function waitForAttempts(page, attempts, count) {
  while (attempts() < count) await page.waitForEvent('websocket');
}

test('with SECRET_KEY: no token asks to sign in, a token opens the chat, another user\'s is refused, an expired one asks again', async () => {
  const secret = 'browser-test-secret';
  await withChatd({args: ['--secret-key', secret, '--token-leeway-seconds', '0']}, async (chatd) => {
    const page = await openChat(browser, chatd.url, 'alice', 'bob', {connected: false});
    await waitForText(page, '#alert-text', 'Please sign in');
    assert.equal(await focusedId(page), 'token');
    await screenshot(page, 'sign-in');

    await page.fill('#token', makeToken(secret, 'alice'));
    await page.click('#join button[type="submit"]');
    await waitConnected(page);
    await send(page, 'signed in');
    await waitForState(page, 'signed in', 'sent');
    assert.doesNotMatch(page.url(), /token/, 'the token stays out of the address bar');

    // A token of someone who is not in the chat: 4403.
    await page.click('#leave');
    await page.fill('#token', makeToken(secret, 'mallory'));
    await page.click('#join button[type="submit"]');
    await waitForText(page, '#alert-text', 'This token is not for this chat');

    // A link may carry the token in its hash; the page takes it out of the address bar.
    const bob = await newPage(browser);
    await bob.goto(`${chatd.url}/#me=bob&peer=alice&token=${makeToken(secret, 'bob')}`);
    await waitConnected(bob);
    await waitForMessage(bob, 'signed in');
    assert.doesNotMatch(bob.url(), /token/);

    // A token that runs out during the chat: chatd closes with 4401 "expired".
    const carol = await newPage(browser);
    await carol.goto(`${chatd.url}/#me=carol&peer=alice&token=${makeToken(secret, 'carol', {expiresInSeconds: 5})}`);
    await waitConnected(carol);
    await waitForText(carol, '#alert-text', 'Your sign-in has expired');
    assert.equal(await focusedId(carol), 'token');
    await assertNoProblems(page, bob, carol);
    await page.context().close();
    await bob.context().close();
    await carol.context().close();
  });
});

test('a message longer than the server takes is marked "not sent"; the chat goes on', async () => {
  await withChatd({args: ['--max-text-bytes', '32']}, async (chatd) => {
    const page = await openChat(browser, chatd.url, 'alice', 'bob');
    const long = 'This message is far too long for the limit.';
    await send(page, long);
    await waitForState(page, long, 'failed');
    await waitForText(page, '#alert-text', 'too long');
    assert.match(await page.$eval('#messages .message[data-state="failed"] .state', (node) => node.textContent),
      /Not sent: the message is too long/);
    await send(page, 'short one');
    await waitForState(page, 'short one', 'sent');
    await page.waitForSelector('#alert', {state: 'hidden'});
    await assertNoProblems(page);
    await page.context().close();
  });
});

test('sending past the rate limit: the page says to slow down, and every message arrives once, in order', async () => {
  await withChatd({args: ['--messages-per-second', '2', '--message-burst', '2']}, async (chatd) => {
    const alice = await openChat(browser, chatd.url, 'alice', 'bob');
    const bob = await openChat(browser, chatd.url, 'bob', 'alice');
    const texts = Array.from({length: 6}, (_, i) => `quick ${i + 1}`);
    // Six sends at once, as fast as no typist could: the third is past the burst.
    await alice.evaluate((all) => {
      const field = document.getElementById('text');
      for (const text of all) {
        field.value = text;
        document.getElementById('composer').requestSubmit();
      }
    }, texts);
    await waitForText(alice, '#alert-text', 'faster than the server allows');
    await waitForMessage(bob, 'quick 6');
    await waitForState(alice, 'quick 6', ['sent', 'read']);
    assert.deepEqual(await messageTexts(bob), texts);
    assert.deepEqual(await messageTexts(alice), texts);
    await assertNoProblems(alice, bob);
    await alice.context().close();
    await bob.context().close();
  });
});
