// Starts GraphiQL against this server: the docs explorer open, the headers editor showing,
// ready for the API key ("Authorization": "Bearer <key>").
const EXAMPLE_QUERY = `# Welcome to the customer API.
#
# Put your API key in the Headers tab below as  {"Authorization": "Bearer <your key>"},
# press the re-fetch button (⟳, bottom left) to load the Docs panel, which describes every
# type and field, and run a query with ▶.

query Customers {
  customers(first: 5) {
    totalCount
    nodes {
      externalCustomerId
      data {
        email
        phone
      }
      kycStatus
    }
  }
}
`;

const fetcher = GraphiQL.createFetcher({ url: window.location.origin + "/graphql" });
const root = ReactDOM.createRoot(document.getElementById("graphiql"));
root.render(
  React.createElement(GraphiQL, {
    fetcher,
    defaultQuery: EXAMPLE_QUERY,
    defaultHeaders: '{\n  "Authorization": "Bearer "\n}',
    defaultEditorToolsVisibility: "headers",
    headerEditorEnabled: true,
    // The key typed into the headers editor lives in this page only: never in localStorage,
    // where anything else on the origin (or anyone at the browser) could read it later.
    shouldPersistHeaders: false,
    visiblePlugin: GraphiQL.React.DOC_EXPLORER_PLUGIN,
  }),
);
