// @civitai/client ships ES modules written for bundlers (`import "./generated"`, extension-less
// paths), which Node's own resolver refuses. This hook resolves them as a bundler does:
// a directory to its index.js, a path without an extension to the .js file.
import { register } from "node:module";

register("./bundler-resolution-hook.mjs", import.meta.url);
