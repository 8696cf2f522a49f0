// The calls React's useStream (and Agent Chat UI) make through the JavaScript SDK, in its order:
// create a thread, stream a run with the tracked modes (resumable, run id from the response),
// read the history, branch from a checkpoint of it, rejoin the first run's stream from its start
// ("-1", as useStream reconnects), wait, search, list; then an interrupt answered with
// strictResume, and a strict resume that answers nothing (strict=1 only: a server without strict
// resumes ignores the field). Prints what it saw as JSON.
import { Client } from "@langchain/langgraph-sdk";

const [url, apiKey, strict] = process.argv.slice(2);
const client = new Client({ apiUrl: url, apiKey: apiKey || undefined });
const streamMode = ["values", "messages-tuple", "updates", "custom"];
const names = async (stream) => {
  const seen = [];
  for await (const part of stream) seen.push(part.event.split("|")[0]);
  return seen;
};
const out = {};

const suite = `js-${crypto.randomUUID()}`;  // dev keeps the threads of earlier runs
const thread = (await client.threads.create({ metadata: { suite } })).thread_id;
let created = null;
out.stream = await names(client.runs.stream(thread, "slow", {
  input: { text: "one" }, streamMode, streamResumable: true, onDisconnect: "continue",
  onRunCreated: (meta) => { created = meta; },
}));
out.runCreated = created !== null && created.thread_id === thread && typeof created.run_id === "string";

const history = await client.threads.getHistory(thread, { limit: 10 });
out.history = history.map((state) => [state.next, state.metadata.source, state.values.log ?? []]);
const fork = { ...history[history.length - 2].checkpoint };  // after the input, before any node
delete fork.thread_id;
out.branch = await names(client.runs.stream(thread, "slow", {
  input: { text: "branch" }, checkpoint: fork, streamMode,
}));
out.branchLog = (await client.threads.getState(thread)).values.log;

out.rejoined = await names(client.runs.joinStream(thread, created.run_id, { lastEventId: "-1" }));
out.wait = (await client.runs.wait(thread, "slow", { input: { text: "two" } })).log;
out.search = (await client.threads.search({ metadata: { suite } })).length;
out.runs = (await client.runs.list(thread)).map((run) => run.status);

const paused = (await client.threads.create()).thread_id;
const interrupted = await client.runs.wait(paused, "approve", { input: { text: "x" } });
const waiting = interrupted.__interrupt__[0].id;
out.resumed = (await client.runs.wait(paused, "approve", {
  command: { resume: { [waiting]: "yes" } }, strictResume: true,
})).log;
if (strict === "1") {
  const stale = [];
  for await (const part of client.runs.stream(paused, "approve", {
    command: { resume: "again" }, strictResume: true,
  })) stale.push([part.event, part.data]);
  out.stale = stale.filter(([event]) => event === "error").map(([, data]) => data.error);
  out.staleState = (await client.threads.getState(paused)).values.log;
}
console.log(JSON.stringify(out));
