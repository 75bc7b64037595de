// ESLint: a few rules that catch real bugs (typed, through tsconfig.json) and the
// import rules that keep the layers of docs/architecture.md ("Layers") apart.
import tseslint from 'typescript-eslint';
import { importX, createNodeResolver } from 'eslint-plugin-import-x';

// The folders of src/, top to bottom, as docs/architecture.md lists them. A folder
// may import the folders below it and never one above it.
const layers = ['cli', 'network', 'control', 'pool', 'domain', 'qmp', 'machine', 'snapshot', 'boot', 'devices', 'storage', 'vcpu', 'bus', 'memory', 'kvm'];

const layerZones = layers.flatMap((layer, index) =>
  layers.slice(0, index).map((above) => ({
    target: `./src/${layer}`,
    from: `./src/${above}`,
    message: `src/${layer} is below src/${above} (docs/architecture.md, "Layers").`,
  })),
);

const importZones = [
  ...layerZones,
  // A device is a register file: it knows nothing of KVM, so it runs the same under
  // a unit test as behind a vCPU.
  {
    target: './src/devices',
    from: './src/kvm',
    message: 'A device never touches KVM: take what it needs (an InterruptLine, a clock) as a parameter.',
  },
  // Product code does not depend on the benchmarks or the tests.
  { target: './src', from: './bench', message: 'src/ must not depend on bench/.' },
  { target: './src', from: './test', message: 'src/ must not depend on test/.' },
];

export default tseslint.config(
  {
    ignores: ['dist/**', 'node_modules/**', 'guests/**/build/**', '**/*.mjs', '**/*.js', 'vitest*.config.ts'],
  },
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    plugins: { 'import-x': importX },
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    settings: { 'import-x/resolver-next': [createNodeResolver()] },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      // `_size`: a BusDevice method that does not need every parameter of the interface.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      // The code marks indexed reads with `!` (as under noUncheckedIndexedAccess); this
      // rule, reading tsconfig.json, would call every one of them unnecessary.
      '@typescript-eslint/no-unnecessary-type-assertion': 'off',
      'import-x/no-restricted-paths': ['error', { zones: importZones }],
    },
  },
  {
    // Tests compare against JSON.parse results and vitest's asymmetric matchers
    // (expect.any()), which are `any` by design.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    // Only src/kvm speaks to koffi (docs/architecture.md, "Layers").
    files: ['src/**/*.ts'],
    ignores: ['src/kvm/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        { paths: [{ name: 'koffi', message: 'Only src/kvm calls koffi: add what you need there.' }] },
      ],
    },
  },
);
