import { runService } from "@tandem/service-kit";
import { annConfig } from "./config.js";
import { startAnn } from "./service.js";

runService("ann", () => startAnn(annConfig()));
