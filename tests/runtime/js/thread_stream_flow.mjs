// The JavaScript client's own streaming session (`client.threads.stream`, the protocol its new
// React controller uses): start a run whose subgraph stops at an interrupt, collect the messages
// and states it streams, answer the interrupt, read the output; then a second run on the same
// thread with the fields the client adds (multitaskStrategy, forkFrom from a checkpoint).
// Prints one JSON line of what was observed. Usage: node thread_stream_flow.mjs URL API_KEY
import { Client } from "@langchain/langgraph-sdk";

const [url, apiKey] = process.argv.slice(2);
const client = new Client({ apiUrl: url, apiKey: apiKey || undefined });
const out = {};
const within = (promise, ms, what) => Promise.race([promise, new Promise((_, reject) =>
  setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms))]);

const thread = client.threads.stream({ assistantId: "gate" });
const methods = [];
thread.onEvent((event) => methods.push(event.method));
await thread.run.start({ input: { text: "js" }, multitaskStrategy: "enqueue" });
for (let i = 0; i < 200 && !thread.interrupted; i += 1) await new Promise((r) => setTimeout(r, 50));
out.interrupted = thread.interrupted;
out.interrupts = thread.interrupts.map((i) => [i.namespace.map((p) => p.split(":")[0]), i.payload ?? i.value]);
const [asked] = thread.interrupts;
await thread.input.respond({ interrupt_id: asked.interruptId ?? asked.interrupt_id,
  namespace: asked.namespace, response: "ship" });
await within(thread.output, 20000, "output");
const settled = async (threadId) => {  // every run of the thread joined: its final state
  for (const run of await client.runs.list(threadId)) await client.runs.join(threadId, run.run_id);
  const runs = await client.runs.list(threadId);
  return [runs.map((r) => r.status), (await client.threads.getState(threadId)).values.log];
};
out.answered = await settled(thread.threadId);
out.methods = [...new Set(methods)].sort();
await thread.close();

// the nested graph's tokens, from inside its subgraph, through the messages projection of a
// fresh session on a new thread
const nested = client.threads.stream({ assistantId: "nested" });
await nested.run.start({ input: { text: "tokens" } });
out.nestedOutput = (await within(nested.output, 20000, "nested output")).log;
const history = await client.threads.getHistory(nested.threadId);
const fork = history.find((h) => h.next.includes("editor"));
await nested.close();

// a run forked from a checkpoint: the SDK folds forkFrom into config.configurable.checkpoint_id
const again = client.threads.stream(nested.threadId, { assistantId: "nested" });
await again.run.start({ input: null, forkFrom: fork.checkpoint.checkpoint_id,
  multitaskStrategy: "reject" });
await within(again.output, 20000, "forked output");
out.forked = await settled(nested.threadId);
// the fork re-ran editor and review from the chosen checkpoint: their steps follow it
const after = await client.threads.getHistory(nested.threadId);
out.forkSteps = [history.length, after.length,
  after[0].parent_checkpoint?.checkpoint_id === fork.checkpoint.checkpoint_id
    || after.some((h) => h.parent_checkpoint?.checkpoint_id === fork.checkpoint.checkpoint_id
      && h.metadata.run_id !== history[0].metadata.run_id)];
await again.close();
console.log(JSON.stringify(out));
