// herdctl's Docker layer, provided by herdctl-container: the whole swap is this file and
// docker-config.ts (see herdctl-container's README, "Using it in herdctl").
export { ContainerRunner } from "herdctl-container";
