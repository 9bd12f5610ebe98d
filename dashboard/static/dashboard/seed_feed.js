// Seed 000's client, as it was: one plain WebSocket to ws/test/, and the text of the latest
// message (`{"value": <records>}`) shown in #app. No shared client, no reconnect.
const socket = new WebSocket(
  (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/test/",
);
socket.onmessage = function (event) {
  document.querySelector("#app").innerText = event.data;
};
