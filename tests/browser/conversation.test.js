// Two people chatting in two browsers: messages both ways with their states, typing
// and presence, history after a reload and older pages on scrolling up, a phone
// screen. One chatd for the file, with a history page of 20 messages and no rate
// limit (the history test posts 50 messages over the REST API at once).

import assert from 'node:assert/strict';
import {after, before, test} from 'node:test';
import {
  assertNoProblems, launchBrowser, messageTexts, openChat, PHONE, watchMessages, screenshot,
  send, statesOf, waitConnected, waitForMessage, waitForState, waitForText,
} from './lib/browser.js';
import {Chatd} from './lib/processes.js';

let chatd;
let browser;

before(async () => {
  chatd = await Chatd.start({args: ['--history-limit', '20', '--messages-per-second', '0']});
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await chatd?.stop();
  chatd?.removeData();
});

test('alice and bob chat both ways; the sender sees sending, sent, then read', async () => {
  // Alice writes first, bob is not there yet: her message stays "sent" until he
  // opens the chat and sees it.
  const alice = await openChat(browser, chatd.url, 'alice', 'bob');
  await watchMessages(alice);
  await send(alice, 'Hi Bob! 👋');
  await waitForState(alice, 'Hi Bob! 👋', 'sent');
  const bob = await openChat(browser, chatd.url, 'bob', 'alice');
  await watchMessages(bob);
  await waitForMessage(bob, 'Hi Bob! 👋');
  await waitForText(alice, '#presence', 'online');
  await waitForState(alice, 'Hi Bob! 👋', 'read');
  assert.deepEqual(await statesOf(alice, 'Hi Bob! 👋'), ['sending', 'sent', 'read']);

  // With both there, alice reads bob's answer as it comes. The Send button works as
  // well as Enter; Shift+Enter is a new line.
  await bob.fill('#text', 'Hi Alice.');
  await bob.press('#text', 'Shift+Enter');
  await bob.keyboard.type('How are you?');
  await bob.click('#send');
  await waitForMessage(alice, 'Hi Alice.\nHow are you?');
  await waitForState(bob, 'Hi Alice.\nHow are you?', 'read');
  // "Sent" may last no longer than alice's read receipt takes (or be skipped, when
  // the receipt overtakes the ack), so only the first and the last state are sure.
  const states = await statesOf(bob, 'Hi Alice.\nHow are you?');
  assert.equal(states[0], 'sending');
  assert.equal(states.at(-1), 'read');
  assert.ok(states.every((state) => ['sending', 'sent', 'read'].includes(state)), `states: ${states}`);

  // Text is text: markup arrives as written and is never parsed.
  const markup = '<img src=x onerror="window.pwned=1"> <b>bold?</b>';
  await send(alice, markup);
  await waitForMessage(bob, markup);
  assert.equal(await bob.$$eval('#messages img, #messages b', (nodes) => nodes.length), 0);
  assert.equal(await bob.evaluate(() => window.pwned), undefined);

  const expected = ['Hi Bob! 👋', 'Hi Alice.\nHow are you?', markup];
  assert.deepEqual(await messageTexts(alice), expected);
  assert.deepEqual(await messageTexts(bob), expected);
  await screenshot(alice, 'conversation-alice');
  await screenshot(bob, 'conversation-bob');

  // A reload shows the history, oldest first, with the read marks.
  await waitForState(alice, markup, 'read');
  await alice.reload();
  await waitConnected(alice);
  await waitForState(alice, markup, 'read');
  assert.deepEqual(await messageTexts(alice), expected);
  assert.equal(await alice.$eval('#messages .message.mine', (li) => li.dataset.state), 'read');
  await assertNoProblems(alice, bob);
  await alice.context().close();
  await bob.context().close();
});

test('bob sees alice typing, and alice online until her page closes', async () => {
  const bob = await openChat(browser, chatd.url, 'bob', 'alice');
  await waitForText(bob, '#presence', 'offline');
  const alice = await openChat(browser, chatd.url, 'alice', 'bob');
  await waitForText(bob, '#presence', 'online');
  await waitForText(alice, '#presence', 'online');

  await alice.focus('#text');
  await alice.keyboard.type('Are you there');
  await waitForText(bob, '#typing', 'alice is typing…');
  await screenshot(bob, 'typing');

  // Cleared without sending: the indicator goes.
  await alice.fill('#text', '');
  await bob.waitForFunction(() => document.querySelector('#typing').textContent === '');

  // Typing, then sending: the message ends the indicator.
  await alice.keyboard.type('Still here?');
  await waitForText(bob, '#typing', 'alice is typing…');
  await alice.press('#text', 'Enter');
  await waitForMessage(bob, 'Still here?');
  await bob.waitForFunction(() => document.querySelector('#typing').textContent === '');

  await alice.context().close();
  await waitForText(bob, '#presence', 'offline');
  await assertNoProblems(bob);
  await bob.context().close();
});

test('history after a reload, and older pages load on scrolling up', async () => {
  // 50 messages over the REST API: more than two pages of 20.
  for (let i = 1; i <= 50; i++) await chatd.post('carol', 'dave', `message ${i}`, `m-${i}`);
  const numbered = (from, to) => Array.from({length: to - from + 1}, (_, i) => `message ${from + i}`);

  const dave = await openChat(browser, chatd.url, 'dave', 'carol');
  await waitForMessage(dave, 'message 50');
  assert.deepEqual(await messageTexts(dave), numbered(31, 50));
  await dave.waitForSelector('#load-older:not([hidden])');

  // Scrolled to the top, the page before comes in above, and what was on screen stays put.
  const topBefore = await dave.evaluate(() => {
    document.getElementById('log').scrollTop = 0;
    const first = document.querySelector('#messages .message');
    return first.getBoundingClientRect().top;
  });
  await waitForMessage(dave, 'message 11');
  assert.deepEqual(await messageTexts(dave), numbered(11, 50));
  const topAfter = await dave.evaluate(
    () => [...document.querySelectorAll('#messages .message')].find((li) => li.textContent.includes('message 31')).getBoundingClientRect().top,
  );
  assert.ok(Math.abs(topAfter - topBefore) <= 2, `message 31 moved from ${topBefore} to ${topAfter}`);

  // Scrolling up to the start: every message once, in order, and no more to load.
  await dave.waitForFunction(() => {
    document.getElementById('log').scrollTop = 0;
    return [...document.querySelectorAll('#messages .text')].some((node) => node.textContent === 'message 1');
  }, null, {polling: 100});
  await waitForText(dave, '#history-state', 'This is the start of the conversation.');
  assert.deepEqual(await messageTexts(dave), numbered(1, 50));
  assert.equal(await dave.$eval('#load-older', (button) => button.hidden), true);
  await screenshot(dave, 'history-start');

  // The other way: the "Load older messages" button, after a reload. It is clicked
  // where it is, without scrolling up to it (which would load the page by itself).
  await dave.reload();
  await waitConnected(dave);
  await waitForMessage(dave, 'message 50');
  assert.deepEqual(await messageTexts(dave), numbered(31, 50));
  await dave.dispatchEvent('#load-older', 'click');
  await waitForMessage(dave, 'message 11');
  assert.deepEqual(await messageTexts(dave), numbered(11, 50));
  await assertNoProblems(dave);
  await dave.context().close();
});

test('the page fits a 360 px wide phone screen and works from the form', async () => {
  const page = await openChat(browser, chatd.url, 'erin', 'frank', {viewport: PHONE});
  await page.click('#leave');
  // The form: labelled fields, the last values kept.
  await page.waitForSelector('#join:not([hidden])');
  assert.equal(await page.inputValue('#me'), 'erin');
  await page.getByLabel('Chat with').fill('grace');
  await page.getByRole('button', {name: 'Open chat'}).click();
  await waitConnected(page);
  assert.equal(await page.textContent('#chat-title'), 'grace');
  assert.match(page.url(), /\?me=erin&peer=grace$/);

  await send(page, 'A long line that has to wrap on a narrow screen, with a verylongwordwithoutanyspacesinsideitatall.');
  await waitForState(page, 'A long line that has to wrap on a narrow screen, with a verylongwordwithoutanyspacesinsideitatall.', 'sent');
  const layout = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    composerBottom: document.getElementById('composer').getBoundingClientRect().bottom,
    sendRight: document.getElementById('send').getBoundingClientRect().right,
  }));
  assert.ok(layout.scrollWidth <= PHONE.width, `the page is ${layout.scrollWidth} px wide`);
  assert.ok(layout.composerBottom <= PHONE.height, 'the composer is on screen');
  assert.ok(layout.sendRight <= PHONE.width, 'the Send button is on screen');
  await screenshot(page, 'phone');

  // After a reload, the form's values come from localStorage.
  await page.goto(chatd.url + '/');
  await page.waitForSelector('#join:not([hidden])');
  assert.equal(await page.inputValue('#me'), 'erin');
  assert.equal(await page.inputValue('#peer'), 'grace');
  await assertNoProblems(page);
  await page.context().close();
});
