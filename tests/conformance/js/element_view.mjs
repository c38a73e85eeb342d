// What Element would show one resident: run by tests/integration/test_element_conformance.py.
//
// Logs in with the resident's access token as a new device with matrix-js-sdk's Rust crypto
// (what Element Web runs), syncs, and prints one JSON object on stdout:
//   polls: per poll start, the answers and the counts element-web's MPollBody shows (js-sdk's
//          Poll model for the responses and the end, matrix-events-sdk's PollResponseEvent to
//          validate each, the latest response per person);
//   links: every matrix.to link in the bot's messages, parsed the way Element's permalink
//          parser reads them (room or alias, event, via servers);
//   calendars: every text/calendar file the bot sent, downloaded and read by ical.js.
// Input: one JSON argument {homeserver, userId, accessToken, rooms: [...], botId}.

// matrix-js-sdk 43 declares node >= 22; Promise.withResolvers is the one thing node 20 lacks.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}

const sdk = await import("matrix-js-sdk");
const { PollResponseEvent, PollStartEvent } = await import("matrix-events-sdk");
const ICAL = (await import("ical.js")).default;
const loglevel = (await import("loglevel")).default;
loglevel.setLevel("error");

const input = JSON.parse(process.argv[2]);
const client = sdk.createClient({
  baseUrl: input.homeserver,
  userId: input.userId,
  accessToken: input.accessToken,
  deviceId: "ELEMENTCHECK" + Math.floor(Math.random() * 1e6),
});
await client.initRustCrypto({ useIndexedDB: false });
const prepared = new Promise((resolve, reject) => {
  client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
    if (state === "PREPARED") resolve();
    if (state === "ERROR") reject(data?.error);
  });
});
await client.startClient({ initialSyncLimit: 200, lazyLoadMembers: false });
await prepared;

function permalink(link) {
  // https://matrix.to/#/<room or alias>[/<event>][?via=…&via=…], as Element's parser splits it.
  const url = new URL(link);
  const fragment = decodeURIComponent(url.hash.replace(/^#\/?/, ""));
  const [path, query] = fragment.split("?");
  const [target, eventId] = path.split("/");
  const params = new URLSearchParams(query ?? "");
  return { link, roomId: target, eventId: eventId ?? null, via: params.getAll("via") };
}

async function counts(room, poll) {
  // element-web MPollBody: collectUserVotes (latest per sender, up to the end), countVotes.
  const responses = await poll.getResponses();
  const endTs = poll.isEnded ? room.findEventById(poll.endEventId)?.getTs() : undefined;
  const latest = new Map();
  for (const event of responses.getRelations()) {
    if (endTs !== undefined && event.getTs() > endTs) continue;
    const prev = latest.get(event.getSender());
    if (!prev || prev.getTs() < event.getTs()) latest.set(event.getSender(), event);
  }
  const start = poll.pollEvent;
  const collected = {};
  for (const event of latest.values()) {
    const answers = event.getContent()["org.matrix.msc3381.poll.response"]?.answers ?? [];
    const response = PollResponseEvent.from(answers, "$irrelevant");
    response.validateAgainst(start);
    if (response.spoiled) continue;
    for (const id of response.answerIds) collected[id] = (collected[id] ?? 0) + 1;
  }
  return collected;
}

const out = { polls: [], links: [], calendars: [] };
for (const roomId of input.rooms) {
  const room = client.getRoom(roomId);
  if (!room) continue;
  // Page back so every event of the test is there.
  while (room.getLiveTimeline().getPaginationToken("b") && room.getLiveTimeline().getEvents().length < 400) {
    const more = await client.scrollback(room, 100);
    if (!more) break;
    if (!room.getLiveTimeline().getPaginationToken("b")) break;
  }
  const events = room.getLiveTimeline().getEvents();
  for (const event of events) {
    if (event.isEncrypted()) await client.decryptEventIfNeeded(event);
  }
  for (const poll of room.polls?.values() ?? []) {
    const start = poll.pollEvent;
    const counted = await counts(room, poll); // fetches the relations: the end is known after
    out.polls.push({
      room: roomId,
      eventId: poll.pollId,
      question: start.question.text,
      maxSelections: start.maxSelections,
      answers: start.answers.map((a) => ({ id: a.id, text: a.text })),
      ended: poll.isEnded,
      counts: counted,
    });
  }
  for (const event of events) {
    if (event.getSender() !== input.botId || event.getType() !== "m.room.message") continue;
    const content = event.getContent();
    const texts = [content.body ?? "", content.formatted_body ?? ""].join("\n");
    for (const link of texts.match(/https:\/\/matrix\.to\/#\/[^\s"<>)]+/g) ?? []) {
      out.links.push({ room: roomId, ...permalink(link) });
    }
    if (content.msgtype === "m.file" && content.info?.mimetype === "text/calendar") {
      const mxc = content.url ?? content.file?.url;
      const http = client.mxcUrlToHttp(mxc, undefined, undefined, undefined, false, true, true);
      const response = await fetch(http, { headers: { Authorization: `Bearer ${input.accessToken}` } });
      const text = await response.text();
      const calendar = new ICAL.Component(ICAL.parse(text));
      for (const vevent of calendar.getAllSubcomponents("vevent")) {
        const item = new ICAL.Event(vevent);
        const description = item.description ?? "";
        out.calendars.push({
          room: roomId,
          summary: item.summary,
          start: item.startDate.toJSDate().toISOString(),
          uid: item.uid,
          links: (description.match(/https:\/\/matrix\.to\/#\/\S+/g) ?? []).map(permalink),
        });
      }
    }
  }
}
client.stopClient();
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(0);
