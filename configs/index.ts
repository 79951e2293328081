export * from './schema.js';
export * from './load.js';
export * from './presets.js';
export * from './reference.js';
