export { type EncoderConfig, encoderConfig, encoderConfigSchema } from "./config.js";
export { type RunningEncoder, startQueryEncoder } from "./service.js";
