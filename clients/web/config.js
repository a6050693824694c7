// Where this copy of the web app finds the API. `make dev` serves a generated config.js in
// place of this file (the local gateway's own ports); a deployed copy edits this one:
//
//   apiUrl: the HTTP API base URL, e.g. 'https://abc123.execute-api.eu-west-1.amazonaws.com'
//           (null: the page's own origin, e.g. behind a CloudFront behaviour that forwards
//           the API paths)
//   wsUrl:  the WebSocket API URL with its stage, e.g.
//           'wss://def456.execute-api.eu-west-1.amazonaws.com/prod'
//
// The query parameters ?api=…&ws=… override both (handy for pointing one copy at another
// stack). See docs/deploy.md, "Hosting the web app".
export default Object.freeze({
  apiUrl: null,
  wsUrl: null,
});
