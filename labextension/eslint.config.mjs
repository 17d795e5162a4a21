// Lint for the sidebar's TypeScript: ESLint's and typescript-eslint's recommended rules, with
// type information (a forgotten promise is an error), and React's rules of hooks. Layout is
// Prettier's alone (.prettierrc.json), so the rules about it are turned off last.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import { defineConfig } from 'eslint/config';
import reactHooks from 'eslint-plugin-react-hooks';
import tseslint from 'typescript-eslint';

export default defineConfig(
  {
    files: ['src/**/*.{ts,tsx}'],
    extends: [
      js.configs.recommended,
      tseslint.configs.recommendedTypeChecked,
      reactHooks.configs.flat.recommended
    ],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname }
    }
  },
  prettier
);
