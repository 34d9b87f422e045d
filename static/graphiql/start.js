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

// The headers hold the API key. GraphiQL keeps them, and its history (which records each run
// query's headers), in this page's memory only: never in localStorage, where anything else on
// the origin, or anyone at the browser later, could read them. The query and tabs persist.
const IN_MEMORY = new Set(["graphiql:headers", "graphiql:queries", "graphiql:favorites"]);
const memory = new Map();
const ours = () => Object.keys(localStorage).filter((key) => key.startsWith("graphiql:"));
const storage = {
  getItem: (key) => (IN_MEMORY.has(key) ? (memory.get(key) ?? null) : localStorage.getItem(key)),
  setItem: (key, value) =>
    IN_MEMORY.has(key) ? memory.set(key, value) : localStorage.setItem(key, value),
  removeItem: (key) => (IN_MEMORY.has(key) ? memory.delete(key) : localStorage.removeItem(key)),
  get length() {
    return ours().length + memory.size;
  },
  clear() {
    memory.clear();
    ours().forEach((key) => localStorage.removeItem(key));
  },
};

// Subscriptions go over graphql-transport-ws on the same path. GraphiQL hands the Headers tab
// to the socket as connection_init's payload ({"Authorization": "Bearer <key>"}), which is
// where this server looks for the key of a WebSocket (web/websocket.py).
const fetcher = GraphiQL.createFetcher({
  url: window.location.origin + "/graphql",
  subscriptionUrl: window.location.origin.replace(/^http/, "ws") + "/graphql",
});
const root = ReactDOM.createRoot(document.getElementById("graphiql"));
root.render(
  React.createElement(GraphiQL, {
    fetcher,
    defaultQuery: EXAMPLE_QUERY,
    defaultHeaders: '{\n  "Authorization": "Bearer "\n}',
    defaultEditorToolsVisibility: "headers",
    headerEditorEnabled: true,
    shouldPersistHeaders: false,
    storage,
    visiblePlugin: GraphiQL.React.DOC_EXPLORER_PLUGIN,
  }),
);
