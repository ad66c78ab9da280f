export {
  type PendingUiStatus,
  UI_TOMBSTONE_TTL_MS,
  type UiResolution,
} from "./pending-ui.ts";
export * from "./presets.ts";
export * from "./registry.ts";
export * from "./types.ts";
