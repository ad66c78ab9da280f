/** Thinking levels as pi names them (pi-ai `ThinkingLevel`; the seed contract lists the first six). */
export const THINKING_LEVELS = ["off", "minimal", "low", "medium", "high", "xhigh"] as const;
export type ThinkingLevel = (typeof THINKING_LEVELS)[number];

/** Provider APIs a custom provider may speak (seed contract `CustomProviderModel.api`). */
export const PROVIDER_APIS = ["openai-completions", "openai-responses", "anthropic-messages"] as const;
export type ProviderApi = (typeof PROVIDER_APIS)[number];
