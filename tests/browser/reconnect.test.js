// The page through a restart of chatd: it reconnects by itself, resumes from the
// last seq it has, sends again what was written while the server was away, and
// shows every message exactly once.

import assert from 'node:assert/strict';
import {after, before, test} from 'node:test';
import {
  assertNoProblems, launchBrowser, messageTexts, mostCopies, newPage, openChat, screenshot, send, statesOf,
  waitConnected, waitForMessage, waitForState, waitForText, watchMessages,
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

test('after chatd restarts, both pages reconnect; nothing is lost or doubled', async () => {
  const alice = await openChat(browser, chatd.url, 'alice', 'bob');
  const bob = await openChat(browser, chatd.url, 'bob', 'alice');
  await send(alice, 'before the restart');
  await waitForMessage(bob, 'before the restart');
  await send(bob, 'me too, before');
  await waitForMessage(alice, 'me too, before');
  await watchMessages(alice);
  await watchMessages(bob);

  // SIGTERM: chatd drains (close 1001) and exits 0; the pages wait to reconnect.
  const {port, dataDir} = chatd;
  await chatd.stop();
  await waitForText(alice, '#connection', 'reconnecting');
  await waitForText(bob, '#connection', 'reconnecting');
  await alice.waitForSelector('#alert:not([hidden])');
  assert.match(await alice.textContent('#alert-text'), /restarting|Connection lost/);
  await screenshot(alice, 'reconnecting');

  // Written while the server is down: it stays "sending".
  await send(bob, 'sent while the server was down');
  await waitForState(bob, 'sent while the server was down', 'sending');

  // The same port and data: the pages come back without anyone touching them.
  chatd = await Chatd.start({port, dataDir});
  await waitConnected(alice);
  await waitConnected(bob);
  await waitForState(bob, 'sent while the server was down', ['sent', 'read']);
  await waitForMessage(alice, 'sent while the server was down');
  await alice.waitForSelector('#alert', {state: 'hidden'});

  await send(bob, 'after the restart');
  await waitForMessage(alice, 'after the restart');
  await send(alice, 'welcome back');
  await waitForMessage(bob, 'welcome back');
  await waitForState(alice, 'welcome back', 'read');

  const expected = ['before the restart', 'me too, before', 'sent while the server was down',
    'after the restart', 'welcome back'];
  assert.deepEqual(await messageTexts(alice), expected);
  assert.deepEqual(await messageTexts(bob), expected);
  // Every seq once, in order.
  const seqs = await alice.$$eval('#messages .message', (nodes) => nodes.map((node) => Number(node.dataset.seq)));
  assert.deepEqual(seqs, [1, 2, 3, 4, 5]);
  // Not even for a moment did a message show twice.
  for (const page of [alice, bob]) {
    assert.ok(Object.values(await mostCopies(page)).every((count) => count === 1), 'a message was shown twice');
  }

  // And the store agrees: a fresh page shows the same history.
  await bob.reload();
  await waitConnected(bob);
  await waitForMessage(bob, 'welcome back');
  assert.deepEqual(await messageTexts(bob), expected);
  await assertNoProblems(alice, bob);
  await alice.context().close();
  await bob.context().close();
});

test('a send whose ack was lost is sent again with its client_id and stored once', async () => {
  const carol = await openChat(browser, chatd.url, 'carol', 'alice');
  const alice = await newPage(browser);
  // Alice's page talks to chatd through a relay that swallows the first ack and
  // then cuts the connection, as a network failure right after the commit would.
  let acksDropped = 0;
  const sends = []; // client_id of every send frame alice's page wrote
  const acks = []; // the acks it was given
  await alice.routeWebSocket(/\/ws\//, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((frame) => {
      const parsed = JSON.parse(frame);
      if (parsed.type === 'send') sends.push(parsed.client_id);
      server.send(frame);
    });
    server.onMessage((frame) => {
      const parsed = JSON.parse(frame);
      if (parsed.type === 'ack') acks.push(parsed);
      if (acksDropped === 0 && parsed.type === 'ack') {
        acksDropped += 1;
        ws.close({code: 4000, reason: 'relay cut'});
        server.close();
        return;
      }
      ws.send(frame);
    });
  });
  await alice.goto(`${chatd.url}/?me=alice&peer=carol`);
  await waitConnected(alice);
  await watchMessages(alice);

  await send(alice, 'only once, please');
  // Stored, delivered to carol, but alice never heard of it: she reconnects,
  // resends the same client_id, and the server answers with the first ack.
  await waitForMessage(carol, 'only once, please');
  await waitForState(alice, 'only once, please', ['sent', 'read']);
  // "sending" until the resend's ack came (then "sent", or "read" at once if carol
  // read it meanwhile), and never shown twice, though the replay after the
  // reconnect brought it too, before that ack.
  const states = await statesOf(alice, 'only once, please');
  assert.equal(states[0], 'sending');
  assert.ok(['sent', 'read'].includes(states[1]), `states: ${states}`);
  assert.deepEqual(await mostCopies(alice), {'only once, please': 1});
  assert.equal(acksDropped, 1);
  assert.equal(sends.length, 2);
  assert.equal(sends[0], sends[1], 'the resend keeps the client_id');
  assert.deepEqual(acks.map((ack) => [ack.client_id, ack.seq, ack.duplicate]),
    [[sends[0], 1, false], [sends[0], 1, true]]);
  await send(carol, 'got it');
  await waitForMessage(alice, 'got it');
  assert.deepEqual(await messageTexts(alice), ['only once, please', 'got it']);
  assert.deepEqual(await messageTexts(carol), ['only once, please', 'got it']);
  await carol.reload();
  await waitConnected(carol);
  await waitForMessage(carol, 'got it');
  assert.deepEqual(await messageTexts(carol), ['only once, please', 'got it']);
  await assertNoProblems(alice, carol);
  await alice.context().close();
  await carol.context().close();
});

test('a server whose data was replaced: the page drops what it held and starts over', async () => {
  let other = await Chatd.start();
  const alice = await openChat(browser, other.url, 'alice', 'bob');
  const bob = await openChat(browser, other.url, 'bob', 'alice');
  await send(alice, 'from the old store');
  await waitForMessage(bob, 'from the old store');
  await send(alice, 'also old');
  await waitForMessage(bob, 'also old');

  // The same address, an empty store: seq 1 will be another message.
  const {port} = other;
  await other.stop();
  other.removeData();
  other = await Chatd.start({port});
  try {
    await waitConnected(alice);
    await waitForText(alice, '#history-state', 'No messages yet');
    assert.deepEqual(await messageTexts(alice), []);
    await waitConnected(bob);
    await send(bob, 'a fresh start');
    await waitForMessage(alice, 'a fresh start');
    assert.deepEqual(await messageTexts(alice), ['a fresh start']);
    assert.deepEqual(await messageTexts(bob), ['a fresh start']);
    await assertNoProblems(alice, bob);
    await alice.context().close();
    await bob.context().close();
  } finally {
    await other.stop();
    other.removeData();
  }
});
