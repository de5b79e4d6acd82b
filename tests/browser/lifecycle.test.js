// A message's life after it is sent: alice edits and deletes her own messages in
// her page, bob's page shows the new text with an "edited" mark and the tombstone,
// live, after a resume and after a reload; an edit the server refuses is told and
// changes nothing. Blocking: alice blocks bob, bob's sends are refused and his page
// says so (live, and from the hello after a reload), alice's says "You blocked bob",
// and unblocking restores the chat. An operator's erasure turns every message of
// alice into a tombstone. One chatd for the file; the tests of the edit window and
// of the erasure (ADMIN_TOKEN) run their own.

import assert from 'node:assert/strict';
import {after, before, test} from 'node:test';
import {
  assertNoProblems, launchBrowser, messageTexts, newPage, screenshot, send, waitConnected,
  waitForMessage, waitForState, waitForText,
} from './lib/browser.js';
import {Chatd} from './lib/processes.js';

let chatd;
let browser;

before(async () => {
  chatd = await Chatd.start();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await chatd?.stop();
  chatd?.removeData();
});

/**
 * Opens `/?me=…&peer=…` as openChat does, recording every frame the page sends
 * (parsed) in `page.sent`.
 */
async function openRecorded(baseUrl, me, peer) {
  const page = await newPage(browser);
  page.sent = [];
  page.on('websocket', (ws) => ws.on('framesent', ({payload}) => page.sent.push(JSON.parse(payload))));
  await page.goto(`${baseUrl}/?me=${encodeURIComponent(me)}&peer=${encodeURIComponent(peer)}`);
  await waitConnected(page);
  return page;
}

/** The frames of these types the page sent, in order. */
const sentOf = (page, ...types) => page.sent.filter((frame) => types.includes(frame.type));

/** The list as the user sees it, top to bottom. */
function items(page) {
  return page.$$eval('#messages .message', (nodes) => nodes.map((li) => ({
    seq: Number(li.dataset.seq),
    text: li.querySelector('.text').textContent,
    edited: li.querySelector('.edited') !== null,
    deleted: li.classList.contains('deleted'),
  })));
}

/** The <li> of the stored message `seq`. */
const item = (page, seq) => page.locator(`#messages .message[data-seq="${seq}"]`);

/** Waits until message `seq` reads `text` with an "edited" mark, and no change of mine is on its way. */
function waitForEdited(page, seq, text) {
  return page.waitForFunction(([wanted, css]) => {
    const li = document.querySelector(css);
    return li && !li.dataset.change && li.querySelector('.text').textContent === wanted && li.querySelector('.edited');
  }, [text, `#messages .message[data-seq="${seq}"]`]);
}

/** Waits until message `seq` is a tombstone. */
function waitForTombstone(page, seq) {
  return page.waitForFunction(
    (css) => document.querySelector(css)?.classList.contains('deleted'),
    `#messages .message[data-seq="${seq}"]`,
  );
}

/** The "edited" mark of message `seq`: its title and its datetime. */
function editedMark(page, seq) {
  return item(page, seq).locator('.edited').evaluate((mark) => ({title: mark.title, dateTime: mark.dateTime}));
}

test('alice edits and deletes her messages; bob sees the new text, the edited mark and the tombstone, live, resumed and reloaded', async () => {
  const alice = await openRecorded(chatd.url, 'alice', 'bob');
  // Bob's page talks to chatd through a relay the test can cut, to send his page
  // away for a while (close 4429: it waits at least 5 s to come back), and which
  // keeps the address of each connection (the resume's ?after=).
  const bob = await newPage(browser);
  const bobUrls = [];
  let bobLink = null;
  await bob.routeWebSocket(/\/ws\//, (ws) => {
    bobUrls.push(new URL(ws.url()));
    const server = ws.connectToServer();
    bobLink = {ws, server};
  });
  await bob.goto(`${chatd.url}/?me=bob&peer=alice`);
  await waitConnected(bob);
  // Another device of alice: it gets the changes as frames, as bob does.
  const alice2 = await openRecorded(chatd.url, 'alice', 'bob');

  await send(alice, 'first draft');
  await waitForMessage(bob, 'first draft');
  await send(alice, 'a message to delete');
  await waitForMessage(bob, 'a message to delete');
  await send(bob, 'bob replies');
  await waitForMessage(alice, 'bob replies');
  await waitForState(alice, 'a message to delete', ['sent', 'read']);
  assert.deepEqual((await items(alice)).map(({seq, text}) => [seq, text]),
    [[1, 'first draft'], [2, 'a message to delete'], [3, 'bob replies']]);

  // Only own messages have the controls.
  assert.equal(await item(alice, 3).locator('.actions').count(), 0, 'bob\'s message has no Edit in alice\'s page');
  assert.equal(await item(bob, 1).locator('.actions').count(), 0, 'alice\'s message has no Edit in bob\'s page');

  // The keyboard reaches Edit; the controls show while focused. Enter opens the
  // editor in place, Escape closes it with nothing sent, focus back on Edit.
  const edit = item(alice, 1).getByRole('button', {name: 'Edit message'});
  await edit.focus();
  assert.equal(await item(alice, 1).locator('.actions').evaluate((node) => getComputedStyle(node).opacity), '1');
  await alice.keyboard.press('Enter');
  const field = item(alice, 1).getByRole('textbox', {name: 'Edit message'});
  await field.waitFor();
  assert.equal(await field.inputValue(), 'first draft');
  assert.equal(await field.evaluate((node) => node === document.activeElement), true, 'the editor has the focus');
  await alice.keyboard.type(' (typo');
  await alice.keyboard.press('Escape');
  await field.waitFor({state: 'detached'});
  assert.equal(await item(alice, 1).locator('.text').textContent(), 'first draft');
  assert.equal(await edit.evaluate((node) => node === document.activeElement), true, 'focus is back on Edit');
  assert.deepEqual(sentOf(alice, 'edit', 'delete'), [], 'Escape sends nothing');

  // Enter saves: an edit frame with a fresh client_id; the page shows the new
  // text with the "edited" mark, whose title is the edit's time.
  await alice.keyboard.press('Enter');
  await field.fill('edited text');
  await screenshot(alice, 'lifecycle-editing');
  await field.press('Enter');
  await waitForEdited(alice, 1, 'edited text');
  const sends = sentOf(alice, 'send');
  const [editFrame] = sentOf(alice, 'edit');
  assert.deepEqual(Object.keys(editFrame).sort(), ['client_id', 'seq', 'text', 'type']);
  assert.equal(editFrame.seq, 1);
  assert.equal(editFrame.text, 'edited text');
  assert.ok(!sends.some((frame) => frame.client_id === editFrame.client_id), 'the edit has a client_id of its own');
  await waitForEdited(bob, 1, 'edited text');
  await waitForEdited(alice2, 1, 'edited text');
  const mark = await editedMark(bob, 1);
  assert.match(mark.title, /^Edited \S/);
  assert.ok(!Number.isNaN(Date.parse(mark.dateTime)), `the mark's datetime: ${mark.dateTime}`);

  // Delete, after a confirmation: the message becomes a tombstone in its place.
  await item(alice, 2).hover();
  await item(alice, 2).getByRole('button', {name: 'Delete message'}).click();
  await item(alice, 2).getByRole('button', {name: 'Yes, delete'}).click();
  await waitForTombstone(alice, 2);
  const [deleteFrame] = sentOf(alice, 'delete');
  assert.deepEqual(Object.keys(deleteFrame).sort(), ['client_id', 'seq', 'type']);
  assert.equal(deleteFrame.seq, 2);
  assert.notEqual(deleteFrame.client_id, editFrame.client_id);
  await waitForTombstone(bob, 2);
  await waitForTombstone(alice2, 2);
  assert.equal(await item(alice, 2).locator('.actions').count(), 0, 'a tombstone has no controls');

  const expected = [
    {seq: 1, text: 'edited text', edited: true, deleted: false},
    {seq: 2, text: 'message deleted', edited: false, deleted: true},
    {seq: 3, text: 'bob replies', edited: false, deleted: false},
  ];
  for (const page of [alice, alice2, bob]) assert.deepEqual(await items(page), expected);
  await screenshot(alice, 'lifecycle-alice');
  await screenshot(bob, 'lifecycle-bob');

  // Bob's page away (close 4429: it comes back after 5 s or more) while alice
  // edits again: the resume, from the highest seq bob's page saw (the delete's,
  // 5: messages 1–3, the edit 4, the delete 5), brings the change to a message
  // it holds.
  bobLink.ws.close({code: 4429, reason: 'test: away for a while'});
  bobLink.server.close();
  await bob.waitForSelector('#connection[data-connection="waiting"]');
  await item(alice, 1).getByRole('button', {name: 'Edit message'}).click();
  await item(alice, 1).getByRole('textbox', {name: 'Edit message'}).fill('edited again while bob was away');
  await item(alice, 1).getByRole('textbox', {name: 'Edit message'}).press('Enter');
  await waitForEdited(alice, 1, 'edited again while bob was away');
  await waitConnected(bob);
  await waitForEdited(bob, 1, 'edited again while bob was away');
  assert.equal(bobUrls.length, 2);
  assert.equal(bobUrls[0].searchParams.get('after'), null);
  assert.equal(bobUrls[1].searchParams.get('after'), '5', 'the resume cursor counts the change frames');
  expected[0].text = 'edited again while bob was away';
  assert.deepEqual(await items(bob), expected);

  // A reload reads the history: the same messages, in their current state.
  await bob.reload();
  await waitConnected(bob);
  await waitForMessage(bob, 'bob replies');
  assert.deepEqual(await items(bob), expected);
  const reloadedMark = await editedMark(bob, 1);
  assert.match(reloadedMark.title, /^Edited \S/);
  await screenshot(bob, 'lifecycle-bob-reloaded');
  await assertNoProblems(alice, alice2, bob);
  for (const page of [alice, alice2, bob]) await page.context().close();
});

test('alice blocks bob: his sends are refused and his page says so; hers says "You blocked bob"; unblocking restores', async () => {
  const alice = await openRecorded(chatd.url, 'alice', 'bob');
  const bob = await openRecorded(chatd.url, 'bob', 'alice');
  await waitForText(bob, '#presence', 'online');
  await send(bob, 'before the block');
  await waitForMessage(alice, 'before the block');
  assert.equal(await alice.getByRole('button', {name: 'Block bob', exact: true}).textContent(), 'Block');

  await alice.getByRole('button', {name: 'Block bob', exact: true}).click();
  await waitForText(alice, '#block-text', 'You blocked bob');
  await alice.getByRole('button', {name: 'Unblock bob', exact: true}).waitFor();
  assert.equal(await alice.textContent('#block'), 'Unblock');
  assert.deepEqual(sentOf(alice, 'block', 'unblock'), [{type: 'block'}]);
  assert.equal(await alice.isEnabled('#text'), true, 'alice can still write');
  await screenshot(alice, 'blocking-alice');

  // Bob's page is told nothing live; his next send is refused with `blocked`: the
  // message is marked "Not sent", the page says he is blocked, the composer goes off.
  await send(bob, 'while blocked');
  await waitForState(bob, 'while blocked', 'failed');
  assert.match(await bob.$eval('#messages .message[data-state="failed"] .state', (node) => node.textContent),
    /Not sent: alice has blocked you/);
  await waitForText(bob, '#block-text', 'alice has blocked you');
  assert.equal(await bob.isDisabled('#text'), true);
  assert.equal(await bob.isDisabled('#send'), true);

  // Reloaded, bob's page knows from the hello: blocked, nothing to send with, and
  // alice's presence not shown (she is online).
  await bob.reload();
  await waitConnected(bob);
  await waitForMessage(bob, 'before the block');
  await waitForText(bob, '#block-text', 'alice has blocked you. You cannot send messages in this chat.');
  assert.equal(await bob.isDisabled('#text'), true);
  assert.equal(await bob.isDisabled('#send'), true);
  assert.equal(await bob.textContent('#presence'), 'offline');
  assert.deepEqual(await messageTexts(bob), (await messageTexts(alice)), 'the refused message was not stored');
  assert.ok(!(await messageTexts(bob)).includes('while blocked'));
  // Edits are refused while blocked: his messages offer Delete only.
  const own = bob.locator('#messages .message.mine').last();
  await own.hover();
  assert.equal(await own.getByRole('button', {name: 'Edit message'}).isVisible(), false);
  assert.equal(await own.getByRole('button', {name: 'Delete message'}).isVisible(), true);
  await screenshot(bob, 'blocked-bob');

  // Alice still writes to bob, and bob still reads.
  await send(alice, 'alice can still write');
  await waitForMessage(bob, 'alice can still write');

  // A reload of alice's page keeps the block (the hello's `blocking`).
  await alice.reload();
  await waitConnected(alice);
  await waitForText(alice, '#block-text', 'You blocked bob');
  assert.equal(await alice.textContent('#block'), 'Unblock');

  // Unblocked: alice's page is back to "Block"; bob's, asked again, lets him write.
  await alice.getByRole('button', {name: 'Unblock bob', exact: true}).click();
  await alice.getByRole('button', {name: 'Block bob', exact: true}).waitFor();
  await alice.waitForSelector('#block-state', {state: 'hidden'});
  assert.deepEqual(sentOf(alice, 'block', 'unblock'), [{type: 'block'}, {type: 'unblock'}]);
  await bob.getByRole('button', {name: 'Check again'}).click();
  await bob.waitForSelector('#block-state', {state: 'hidden'});
  await waitConnected(bob);
  assert.equal(await bob.isEnabled('#text'), true);
  await waitForText(bob, '#presence', 'online');
  await send(bob, 'after the unblock');
  await waitForMessage(alice, 'after the unblock');
  await waitForState(bob, 'after the unblock', ['sent', 'read']);

  // And a reload of bob's page agrees.
  await bob.reload();
  await waitConnected(bob);
  await waitForMessage(bob, 'after the unblock');
  assert.equal(await bob.isEnabled('#text'), true);
  assert.equal(await bob.isHidden('#block-state'), true);
  await screenshot(bob, 'unblocked-bob');
  await assertNoProblems(alice, bob);
  await alice.context().close();
  await bob.context().close();
});

test('an edit the server refuses (past EDIT_WINDOW_SECONDS) is told and changes nothing; a delete still works', async () => {
  const own = await Chatd.start({args: ['--edit-window-seconds', '1']});
  try {
    const alice = await openRecorded(own.url, 'alice', 'bob');
    await send(alice, 'too late to change');
    await waitForState(alice, 'too late to change', 'sent');
    // The window is the server's clock: wait it out (on this machine's clock, which it shares).
    await alice.waitForFunction((until) => Date.now() > until, Date.now() + 1500);

    await item(alice, 1).getByRole('button', {name: 'Edit message'}).click();
    await item(alice, 1).getByRole('textbox', {name: 'Edit message'}).fill('changed after all');
    await item(alice, 1).getByRole('textbox', {name: 'Edit message'}).press('Enter');
    await waitForText(alice, '#alert-text', 'That message is too old to edit now. You can still delete it.');
    await alice.waitForFunction(() => !document.querySelector('#messages .message[data-seq="1"]').dataset.change);
    assert.deepEqual(await items(alice), [{seq: 1, text: 'too late to change', edited: false, deleted: false}]);
    await screenshot(alice, 'edit-refused');

    await item(alice, 1).getByRole('button', {name: 'Delete message'}).click();
    await item(alice, 1).getByRole('button', {name: 'Yes, delete'}).click();
    await waitForTombstone(alice, 1);
    await alice.waitForSelector('#alert', {state: 'hidden'});
    await alice.reload();
    await waitConnected(alice);
    await waitForTombstone(alice, 1);
    assert.deepEqual(await items(alice), [{seq: 1, text: 'message deleted', edited: false, deleted: true}]);
    await assertNoProblems(alice);
    await alice.context().close();
  } finally {
    await own.stop();
    own.removeData();
  }
});

test('an operator erases alice: every message of hers becomes a tombstone, live and in a resume; bob\'s stay', async () => {
  const adminToken = 'browser-test-admin';
  const own = await Chatd.start({args: ['--admin-token', adminToken]});
  try {
    const alice = await openRecorded(own.url, 'alice', 'bob');
    // Bob's page through a relay the test can cut (close 4429: back after 5 s or more).
    const bob = await newPage(browser);
    let bobLink = null;
    await bob.routeWebSocket(/\/ws\//, (ws) => {
      bobLink = {ws, server: ws.connectToServer()};
    });
    await bob.goto(`${own.url}/?me=bob&peer=alice`);
    await waitConnected(bob);
    await send(alice, 'alice one');
    await waitForMessage(bob, 'alice one');
    await send(bob, 'bob two');
    await waitForMessage(alice, 'bob two');
    await send(alice, 'alice three');
    await waitForMessage(bob, 'alice three');
    await item(alice, 3).getByRole('button', {name: 'Edit message'}).click();
    await item(alice, 3).getByRole('textbox', {name: 'Edit message'}).fill('alice three, edited');
    await item(alice, 3).getByRole('textbox', {name: 'Edit message'}).press('Enter');
    await waitForEdited(bob, 3, 'alice three, edited');

    // Bob's page away; the erasure happens meanwhile. Alice's page gets the
    // `erased` frame live, bob's in the resume.
    bobLink.ws.close({code: 4429, reason: 'test: away for a while'});
    bobLink.server.close();
    await bob.waitForSelector('#connection[data-connection="waiting"]');
    const response = await fetch(`${own.url}/api/admin/users/alice/erase`, {
      method: 'POST',
      headers: {Authorization: `Bearer ${adminToken}`},
    });
    assert.equal(response.status, 200, await response.clone().text());
    const expected = [
      {seq: 1, text: 'message deleted', edited: false, deleted: true},
      {seq: 2, text: 'bob two', edited: false, deleted: false},
      {seq: 3, text: 'message deleted', edited: false, deleted: true},
    ];
    await waitForTombstone(alice, 3);
    await waitForTombstone(alice, 1);
    assert.deepEqual(await items(alice), expected);
    await waitConnected(bob);
    await waitForTombstone(bob, 3);
    await waitForTombstone(bob, 1);
    assert.deepEqual(await items(bob), expected);
    await screenshot(bob, 'erased-bob');
    await bob.reload();
    await waitConnected(bob);
    await waitForMessage(bob, 'bob two');
    assert.deepEqual(await items(bob), expected);
    await assertNoProblems(alice, bob);
    await alice.context().close();
    await bob.context().close();
  } finally {
    await own.stop();
    own.removeData();
  }
});
