// A Node service as the original course wrote them: express, cookie-session, @sgtickets/common's currentUser.
// GET /api/users/currentuser answers the user of the session cookie; POST /api/users/signin signs one in.
// Prints "listening <port>" once ready; JWT_KEY comes from the environment, as in the original.
const express = require("express");
const cookieSession = require("cookie-session");
const jwt = require("jsonwebtoken");
const { currentUser } = require("@sgtickets/common");

const app = express();
app.use(express.json());
app.use(cookieSession({ signed: false, secure: false }));
app.use(currentUser);
app.get("/api/users/currentuser", (req, res) => res.send({ currentUser: req.currentUser || null }));
app.post("/api/users/signin", (req, res) => {
  req.session = { jwt: jwt.sign({ id: req.body.id, email: req.body.email }, process.env.JWT_KEY) };
  res.status(200).send({});
});
const server = app.listen(0, "127.0.0.1", () => console.log(`listening ${server.address().port}`));
