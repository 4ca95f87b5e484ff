// Drives the unmodified @fal-ai/client and @civitai/client against an ltxtune server.
// argv[2]: a JSON object {"scenario": "fal" | "civitai", "base": URL, "key": API key, ...};
// prints one JSON document of what the clients saw (Civitai answers recorded whole).
import { createFalClient } from "@fal-ai/client";
import * as civitai from "@civitai/client";

const args = JSON.parse(process.argv[2]);

async function fal() {
  const client = createFalClient({
    credentials: args.key,
    proxyUrl: { url: `${args.base}/api/fal/proxy`, when: "always" },
  });
  const report = {};
  const zip = new Blob([Buffer.from(args.zipBase64, "base64")], { type: "application/zip" });
  report.uploaded = await client.storage.upload(zip);
  const updates = [];
  const result = await client.subscribe("fal-ai/ltx23-trainer-v2/t2v", {
    // a Blob input: the client uploads it first and sends the URL
    input: { training_data_url: zip, number_of_steps: 100 },
    logs: true,
    pollInterval: 100,
    onQueueUpdate: (update) => updates.push(update.status),
  });
  report.subscribe = { requestId: result.requestId, data: result.data, updates };
  // the synchronous call: through the proxy to fal.run, which is /run on ltxtune
  const ran = await client.run("fal-ai/ltx23-trainer-v2/t2v", {
    input: { training_data_url: "http://data.invalid/clips.zip?run_s=0.3", number_of_steps: 100 },
  });
  report.run = { requestId: ran.requestId, data: ran.data };
  const slow = await client.queue.submit("fal-ai/ltx23-trainer-v2/t2v", {
    input: { training_data_url: "http://data.invalid/clips.zip?run_s=30", number_of_steps: 100 },
  });
  report.submitted = slow;
  const status = await client.queue.status("fal-ai/ltx23-trainer-v2/t2v", { requestId: slow.request_id, logs: true });
  report.status = status;
  await client.queue.cancel("fal-ai/ltx23-trainer-v2/t2v", { requestId: slow.request_id });
  try {
    await client.queue.submit("fal-ai/ltx23-trainer-v2/t2v", { input: { training_data_url: "" } });
  } catch (error) {
    report.invalid = { status: error.status, body: error.body };
  }
  return report;
}

async function civitaiScenario() {
  const client = civitai.createCivitaiClient({ baseUrl: args.base, auth: args.key });
  const recorded = {};
  const call = async (name, promise) => {
    const { data, error, response } = await promise;
    recorded[name] = { status: response.status, data: data ?? null, error: error ?? null };
    return data;
  };
  const body = args.workflow;
  const slowBody = args.slowWorkflow;
  const done = await call("submit", civitai.submitWorkflow({ client, body, query: { wait: 0 } }));
  let workflow = done;
  for (let i = 0; i < 200 && !["succeeded", "failed", "canceled", "expired"].includes(workflow.status); i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    workflow = (await civitai.getWorkflow({ client, path: { workflowId: done.id } })).data;
  }
  await call("get", civitai.getWorkflow({ client, path: { workflowId: done.id } }));
  const stepName = workflow.steps[0].name;
  await call("getStep", civitai.getWorkflowStep({ client, path: { workflowId: done.id, stepName } }));
  await call("updateStep", civitai.updateWorkflowStep({ client, path: { workflowId: done.id, stepName }, body: { metadata: { note: "kept" } } }));
  await call("patchStep", civitai.patchWorkflowStep({ client, path: { workflowId: done.id, stepName }, body: [{ op: "add", path: "/metadata/more", value: 1 }] }));
  await call("stepAfter", civitai.getWorkflowStep({ client, path: { workflowId: done.id, stepName } }));
  const blobId = workflow.steps[0].output.epochs[0].model.id;
  await call("blob", civitai.getBlob({ client, path: { blobId } }));
  await call("addTag", civitai.addWorkflowTag({ client, path: { workflowId: done.id }, body: "extra" }));
  await call("removeAllTags", civitai.removeAllWorkflowTags({ client, path: { workflowId: done.id } }));
  await call("afterTags", civitai.getWorkflow({ client, path: { workflowId: done.id } }));
  await call("whatif", civitai.submitWorkflow({ client, body, query: { whatif: true } }));
  await call("recipeWhatif", civitai.invokeTrainingStepTemplate({ client, body: body.steps[0].input, query: { whatif: true } }));

  // cancel as the client's types document it: PUT {status: "canceled"}, and a JSON Patch
  const viaUpdate = await call("submitSlow1", civitai.submitWorkflow({ client, body: slowBody }));
  await call("cancelByUpdate", civitai.updateWorkflow({ client, path: { workflowId: viaUpdate.id }, body: { status: "canceled" } }));
  const viaPatch = await call("submitSlow2", civitai.submitWorkflow({ client, body: slowBody }));
  await call("cancelByPatch", civitai.patchWorkflow({ client, path: { workflowId: viaPatch.id }, body: [{ op: "replace", path: "/status", value: "canceled" }] }));
  for (const [name, id] of [["canceledByUpdate", viaUpdate.id], ["canceledByPatch", viaPatch.id]]) {
    let seen;
    for (let i = 0; i < 100; i++) {
      seen = (await civitai.getWorkflow({ client, path: { workflowId: id } })).data;
      if (seen.status === "canceled") break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    recorded[name] = { status: 200, data: seen, error: null };
  }
  await call("delete", civitai.deleteWorkflow({ client, path: { workflowId: viaPatch.id } }));
  await call("list", civitai.queryWorkflows({ client, query: { take: 100 } }));
  await call("missingBlob", civitai.getBlob({ client, path: { blobId: "0".repeat(32) } }));
  return recorded;
}

const report = args.scenario === "fal" ? await fal() : await civitaiScenario();
console.log(JSON.stringify(report));
