// FieldBot: only what DingTalk H5 sign-in (免登) needs, from the npm package dingtalk-jsapi
import dd from "dingtalk-jsapi/core";
import requestAuthCode from "dingtalk-jsapi/api/runtime/permission/requestAuthCode";
window.fieldbotDingTalk = { ready: function (cb) { dd.ready(cb); }, requestAuthCode: requestAuthCode, env: dd.env };
