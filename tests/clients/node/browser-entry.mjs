// The page's script (bundled for the browser by browser.mjs): the unmodified @fal-ai/client,
// configured as a browser app would be, uploading a file and submitting a request.
import { createFalClient } from "@fal-ai/client";

window.runFal = async ({ server, key }) => {
  const fal = createFalClient({ credentials: key, suppressLocalCredentialsWarning: true, proxyUrl: `${server}/api/fal/proxy` });
  try {
    const file = new Blob([new Uint8Array([80, 75, 5, 6, ...new Array(18).fill(0)])], { type: "application/zip" });
    const submitted = await fal.queue.submit("fal-ai/ltx23-trainer-v2/t2v", {
      input: { training_data_url: file, number_of_steps: 100 },
    });
    const status = await fal.queue.status("fal-ai/ltx23-trainer-v2/t2v", { requestId: submitted.request_id });
    return { ok: true, requestId: submitted.request_id, status: status.status, origin: window.location.origin };
  } catch (error) {
    return { ok: false, error: `${error.name}: ${error.message}`, origin: window.location.origin };
  }
};
