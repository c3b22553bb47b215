/* A small stand-in for Office.js (https://appsforoffice.microsoft.com/lib/1/hosted/office.js)
   served by the browser tests through request interception. It provides what the
   Threadline pane uses: Office.onReady, context.mailbox.item / userProfile,
   addHandlerAsync(ItemChanged | OfficeThemeChanged), roamingSettings,
   officeTheme and requirements. Tests drive it through window.__officeStub.
   Initial state comes from window.__OFFICE_INIT (set by an init script). */
(function () {
  "use strict";
  var init = window.__OFFICE_INIT || {};
  var handlers = {};
  var settings = Object.assign({}, init.roaming || {});

  function toItem(raw) {
    if (!raw) return null;
    var item = Object.assign({ itemType: "message", to: [], cc: [] }, raw);
    if (raw.dateTimeCreated) item.dateTimeCreated = new Date(raw.dateTimeCreated);
    return item;
  }

  var mailbox = {
    item: toItem(init.item),
    userProfile: init.userProfile || { emailAddress: "alice@ourco.com", displayName: "Alice Rep" },
    addHandlerAsync: function (type, handler, options, callback) {
      if (typeof options === "function") { callback = options; }
      (handlers[type] = handlers[type] || []).push(handler);
      if (callback) callback({ status: "succeeded", value: null });
    },
  };

  window.Office = {
    EventType: {
      ItemChanged: "olkItemSelectedChanged",
      OfficeThemeChanged: "officeThemeChanged",
      DialogMessageReceived: "dialogMessageReceived",
    },
    AsyncResultStatus: { Succeeded: "succeeded", Failed: "failed" },
    HostType: { Outlook: "Outlook" },
    context: {
      mailbox: mailbox,
      officeTheme: init.theme || null,
      requirements: { isSetSupported: function () { return false; } },
      roamingSettings: {
        get: function (k) { return settings[k]; },
        set: function (k, v) { settings[k] = v; },
        remove: function (k) { delete settings[k]; },
        saveAsync: function (cb) { if (cb) cb({ status: "succeeded" }); },
      },
      ui: {
        displayDialogAsync: function (url, options, cb) { if (cb) cb({ status: "failed", error: { message: "no dialogs in tests" } }); },
      },
    },
    onReady: function (callback) {
      var p = new Promise(function (resolve) {
        setTimeout(function () { resolve({ host: "Outlook", platform: "OfficeOnline" }); }, 0);
      });
      if (callback) p.then(callback);
      return p;
    },
  };

  function fire(type, arg) {
    (handlers[type] || []).forEach(function (h) { h(arg); });
  }

  window.__officeStub = {
    selectItem: function (raw) {
      mailbox.item = toItem(raw);
      fire("olkItemSelectedChanged", { type: "olkItemSelectedChanged" });
    },
    setTheme: function (theme) {
      window.Office.context.officeTheme = theme;
      fire("officeThemeChanged", { type: "officeThemeChanged", officeTheme: theme });
    },
    roaming: settings,
    handlerCount: function (type) { return (handlers[type] || []).length; },
  };
})();
