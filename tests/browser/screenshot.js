// Makes docs/web-page.png, the picture of the page in the README: a short
// conversation seen by alice at 1000×700, bob typing. Not a test; run it by hand
// after a change to the page's look:
//
//   CHATD_BIN=$PWD/build/chatd node tests/browser/screenshot.js   (absolute: chatd runs in its data directory)
//
// (after tests/browser/run installed playwright-core). A phone-sized picture goes
// to tests/browser/artifacts/web-page-phone.png.

import path from 'node:path';
import {
  ARTIFACTS, DESKTOP, launchBrowser, openChat, PHONE, send, waitForMessage, waitForState, waitForText,
} from './lib/browser.js';
import {Chatd, REPO_ROOT} from './lib/processes.js';

const chatd = await Chatd.start();
const browser = await launchBrowser();
try {
  const alice = await openChat(browser, chatd.url, 'alice', 'bob', {viewport: DESKTOP});
  const bob = await openChat(browser, chatd.url, 'bob', 'alice', {viewport: PHONE});
  const lines = [
    [bob, alice, 'Hi Alice! Are we still on for the release review at three?'],
    [alice, bob, 'Yes. I will bring the notes from the design meeting.'],
    [bob, alice, 'Great. Can you send the agenda before lunch?'],
    [alice, bob, 'Sure, it is almost done:\nthree items, twenty minutes each.'],
    [alice, bob, 'See you at three.'],
  ];
  for (const [from, to, text] of lines) {
    await send(from, text);
    await waitForMessage(to, text);
    await waitForState(from, text, 'read');
  }
  await bob.focus('#text');
  await bob.keyboard.type('Perfect, I');
  await waitForText(alice, '#typing', 'bob is typing…');
  await alice.focus('#text');
  await alice.evaluate(() => document.activeElement.blur());
  await alice.screenshot({path: path.join(REPO_ROOT, 'docs', 'web-page.png')});
  await bob.screenshot({path: path.join(ARTIFACTS, 'web-page-phone.png')});
  console.log('wrote docs/web-page.png');
} finally {
  await browser.close();
  await chatd.stop();
  chatd.removeData();
}
