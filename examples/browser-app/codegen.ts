// GraphQL Code Generator: TypeScript types for every example operation, from the committed
// schema (no running server needed). `npm run codegen` (run by `dev` and `build` first) writes
// them to src/gql/ (git-ignored; tests/test_codegen.py generates and type-checks them), with
// src/gql/persisted-documents.json: the trusted documents manifest ({hash: document}) that the
// API loads (TRUSTED_DOCUMENTS_FILE) so that the app may send each operation's hash alone.
// A client app points `documents` at its own operations instead.
import type { CodegenConfig } from "@graphql-codegen/cli";
import { addTypenameSelectionDocumentTransform } from "@graphql-codegen/client-preset";

const config: CodegenConfig = {
  schema: "../../graphql/schema.graphql",
  documents: ["../../graphql/operations/*.graphql"],
  ignoreNoDocuments: false,
  generates: {
    "src/gql/": {
      preset: "client",
      config: {
        // Timestamps travel as ISO 8601 strings ("2025-06-05T04:57:11.151Z").
        scalars: { DateTime: "string", _Any: "unknown" },
        strictScalars: true,
        enumsAsTypes: true,
        useTypeImports: true,
      },
      presetConfig: {
        fragmentMasking: false,
        // Each document's SHA-256 travels with it (`__meta__.hash`), and the manifest holds
        // the documents as Apollo Client sends them: with the __typename its cache adds.
        persistedDocuments: true,
      },
      documentTransforms: [addTypenameSelectionDocumentTransform],
    },
  },
};

export default config;
