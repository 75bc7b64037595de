// The benchmark suites `tsvmm bench` and `npm run bench` run.
export { benchExits, formatExits, type ExitsRow } from './exits.ts';
