import { runService } from "@tandem/service-kit";
import { encoderConfig } from "./config.js";
import { startQueryEncoder } from "./service.js";

runService("query-encoder", () => startQueryEncoder(encoderConfig()));
