import { existsSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";

export async function resolve(specifier, context, nextResolve) {
  if ((specifier.startsWith("./") || specifier.startsWith("../")) && context.parentURL?.includes("/node_modules/@civitai/")) {
    const target = new URL(specifier, context.parentURL);
    const path = fileURLToPath(target);
    if (existsSync(path) && statSync(path).isDirectory()) {
      return nextResolve(new URL(`${target.href}/index.js`).href, context);
    }
    if (!existsSync(path) && existsSync(`${path}.js`)) {
      return nextResolve(`${target.href}.js`, context);
    }
  }
  return nextResolve(specifier, context);
}
