"""The words the corpus is made of: names, companies, subjects, body lines, bulk senders, mailer headers.

Everything here is data; names starting with "_" are shared inside demodata only.
"""
from __future__ import annotations

import textwrap

ORG_NAME = "Northwind Analytics"
ORG_DOMAIN = "northwind.io"
HQ_OFFSET_MIN = -300  # New York, DST ignored

FREEMAIL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "hotmail.co.uk",
                    "icloud.com", "gmx.de", "web.de", "proton.me")
_FREEMAIL_WEIGHTS = (40, 20, 12, 6, 8, 5, 4, 5)
_FREEMAIL_MAILER = {"gmail.com": "gmail", "outlook.com": "outlook", "hotmail.co.uk": "outlook",
                    "icloud.com": "apple"}

_REP_POOL = [
    ("Alice Nguyen", "Head of Sales"),
    ("Ben Carter", "Senior Account Executive"),
    ("Priya Raman", "Account Executive"),
    ("Diego Fernández", "Account Executive"),
    ("Hannah Schmidt", "Customer Success Manager"),
    ("Marcus Webb", "Solutions Engineer"),
    ("Olivia Brooks", "Sales Development Rep"),
    ("Kenji Watanabe", "Account Executive"),
    ("Fatima Zahra", "Customer Success Manager"),
    ("Liam O'Brien", "Sales Development Rep"),
    ("Chloé Martin", "Account Executive"),
    ("Tomás Ribeiro", "Solutions Engineer"),
]
_REP_TZ = [-300, -300, -300, -480, 0, -300, -360, -480, 60, 0, 60, -300]
_REP_MAILER = ["gmail", "gmail", "apple", "gmail", "outlook", "thunderbird", "gmail",
               "gmail", "apple", "gmail", "gmail", "outlook"]

_FIRST = [
    "James", "Emma", "Olivia", "Noah", "Sophie", "Lucas", "Mia", "Ethan", "Chloé", "Amelia",
    "Jack", "Isla", "Oliver", "Grace", "Henry", "Ava", "Leo", "Nora", "Felix", "Lena",
    "Jonas", "Anna", "Mateo", "Lucía", "Sofía", "François", "Amélie", "Björn", "Åsa",
    "Łukasz", "Anaïs", "Renée", "Siobhán", "Niamh", "Raj", "Aisha", "Wei", "Mei", "Yuki",
    "Hiroshi", "Omar", "Layla", "Tomás", "Inês", "Dmitri", "Katarzyna", "Eero", "Maëlle",
    "David", "Sarah", "Michael", "Laura", "Daniel", "Rachel", "Tom", "Kate", "Sam",
    "Priyanka", "Arjun", "Chen", "Kwame", "Ngozi", "Lars", "Ingrid", "Pablo", "Carmen",
    "Jürgen", "Eleanor", "Rory", "Zara", "Nikolai", "Beatriz", "Hugo", "Matilda", "Ruth",
]
_LAST = [
    "Smith", "Johnson", "Williams", "Brown", "Taylor", "Wilson", "Davies", "Evans", "Thomas",
    "Roberts", "Müller", "Schneider", "Fischer", "Weber", "Becker", "Álvarez", "García",
    "Martínez", "Fernández", "Núñez", "Østergaard", "Jørgensen", "Lindqvist", "Åkesson",
    "Dubois", "Lefèvre", "Moreau", "Rossi", "Bianchi", "Kowalski", "Wiśniewski", "Dvořák",
    "Novák", "O'Connor", "O'Sullivan", "Ó Briain", "MacLeod", "Patel", "Sharma", "Chen",
    "Wang", "Tanaka", "Sato", "Kim", "Nguyen", "Okafor", "Mensah", "van der Berg", "de Vries",
    "Jansen", "Costa", "Silva", "Santos", "Ivanova", "Petrov", "Cohen", "Haddad", "Murphy",
    "Kelly", "Walsh", "Anderson", "Clark", "Lewis", "Walker", "Hall", "Young", "King",
    "Wright", "Hughes", "Green", "Baker", "Adams", "Nelson", "Mitchell", "Brennan", "Lund",
]
# Names that must exist in every corpus (non-ASCII handling is tested on them).
_FIXED_CONTACTS = [("Zoë Müller", ".de"), ("José Álvarez", ".es"), ("Søren Kierkegaard", ".dk")]

_TITLES = [
    "VP of Sales", "Head of Procurement", "CTO", "CFO", "Operations Manager",
    "Director of Finance", "Head of Data", "IT Manager", "Chief Revenue Officer",
    "Procurement Specialist", "Marketing Director", "Product Manager", "Senior Buyer", "COO",
    "Head of Partnerships", "Data Engineer", "Office Manager", "General Counsel",
    "Founder & CEO", "Revenue Operations Lead", "BI Analyst", "Head of Customer Success",
]

_CO_PREFIX = [
    "Bluefin", "Harbor", "Kestrel", "Pemberton", "Wattle", "Granite", "Lumen", "Cobalt",
    "Tidewater", "Redwood", "Silverline", "Brightpath", "Ironbark", "Meridian", "Oakhurst",
    "Quarry", "Sable", "Juniper", "Vantage", "Fjord", "Alder", "Beacon", "Cinder", "Driftwood",
    "Elmstead", "Foxglove", "Gilded", "Halcyon", "Ivory", "Larkspur", "Marlowe", "Nimbus",
    "Orchid", "Pinnacle", "Quill", "Rookwood", "Saffron", "Thistle", "Umber", "Verdant",
    "Willow", "Yarrow", "Zephyr", "Aurora", "Bramble", "Copperleaf", "Dunmore", "Evergreen",
    "Helix", "Kite", "Mistral", "Nordlicht", "Osprey", "Paragon", "Riverbend", "Stonegate",
    "Tern", "Upland", "Vireo", "Wren", "Atlas", "Basalt", "Corvid", "Delta Rose", "Ember",
]
_CO_SECTOR = [
    "Logistics", "Health", "Robotics", "Foods", "Capital", "Energy", "Labs", "Retail",
    "Software", "Freight", "Pharma", "Insurance", "Media", "Manufacturing", "Biotech",
    "Outdoor", "Telecom", "Systems", "Supply", "Motors", "Textiles", "Hospitality",
    "Learning", "Security", "Aerospace", "Water", "Homes", "Payments", "Dental", "Brewing",
]
# tld, legal suffixes, weight, tz offsets (minutes), phone style, outlook region, language
_TLDS = [
    (".com", ["Inc.", "", "LLC", "Corp."], 34, [-300, -300, -360, -480, -420], "us", "namprd", "en"),
    (".io", ["", "Inc."], 9, [-480, -300, 0, 60], "us", "namprd", "en"),
    (".co.uk", ["Ltd", "plc", "Ltd"], 12, [0], "uk", "eurprd", "en"),
    (".de", ["GmbH", "AG", "SE", "GmbH"], 10, [60], "de", "eurprd", "de"),
    (".com.au", ["Pty Ltd"], 7, [600], "au", "ausprd", "en"),
    (".fr", ["SAS", "SA"], 4, [60], "fr", "eurprd", "en"),
    (".nl", ["B.V."], 4, [60], "nl", "eurprd", "en"),
    (".ca", ["Inc.", "Ltd."], 4, [-300, -480], "us", "namprd", "en"),
    (".ai", ["", "Inc."], 3, [-480, -300], "us", "namprd", "en"),
    (".dk", ["A/S", "ApS"], 3, [60], "dk", "eurprd", "en"),
    (".es", ["S.L.", "S.A."], 3, [60], "es", "eurprd", "en"),
    (".ie", ["Ltd", "DAC"], 3, [0], "uk", "eurprd", "en"),
    (".co", ["", "Inc."], 2, [-300, -480], "us", "namprd", "en"),
    (".ch", ["AG", "GmbH"], 2, [60], "de", "eurprd", "de"),
]
_TLD_BY_NAME = {t[0]: t for t in _TLDS}

_PRODUCTS = ["Northwind Insights", "Pipeline Pro", "the Analytics Suite", "Forecast Studio",
             "Northwind Connect", "the Data Hub"]
_AREAS = ["pipeline", "revenue", "churn", "inventory", "marketing attribution", "finance",
          "ops", "supply chain", "customer health", "sales forecast"]
_WEEKDAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
_TIMES = ["9:30", "10am", "11:00", "1pm", "2:30pm", "3pm", "4:00", "noon"]
_CITIES = ["London", "Berlin", "Sydney", "Toronto", "Austin", "Dublin", "München", "Zürich",
           "Malmö", "São Paulo"]
_MONTHS_LONG = ["January", "February", "March", "April", "May", "June", "July", "August",
                "September", "October", "November", "December"]

# Subjects. Keys double as body intents.
_SUBJ_OUT = [
    ("pricing", "Pricing for {quarter} rollout", 6),
    ("followup", "Follow-up on our call", 8),
    ("followup", "Following up on {weekday}'s call", 4),
    ("proposal", "Proposal: {product} for {company}", 5),
    ("nextsteps", "{org} <> {company} – next steps", 4),
    ("renewal", "{company} renewal {year}", 4),
    ("demo", "Demo recording + slides", 4),
    ("demo", "Demo of {product} — {weekday} at {time}?", 3),
    ("question", "Quick question about your {area} reporting", 4),
    ("security", "Security questionnaire for {company}", 2),
    ("contract", "Contract redlines v{n}", 3),
    ("onboarding", "Onboarding kickoff – {product}", 3),
    ("checkin", "Checking in", 4),
    ("meeting", "Meeting next week?", 4),
    ("meeting", "Coffee in {city}?", 2),
    ("case", "Case study: how {othercompany} cut reporting time by {pct}%", 2),
    ("pricing", "Updated quote ({seats} seats)", 3),
]
_SUBJ_OUT_DE = [
    ("pricing", "Angebot für {company} – {product}", 3),
    ("meeting", "Termin nächste Woche?", 2),
    ("followup", "Rückfragen zu unserem Gespräch", 2),
]
_SUBJ_IN = [
    ("invoice", "Question about invoice {inv}", 3),
    ("rfq", "Request for quote: {seats} seats", 3),
    ("support", "Issue with the {area} dashboard export", 3),
    ("reschedule", "Can we move our call to {weekday}?", 3),
    ("eval", "Evaluating {product} – a few questions", 3),
    ("question", "Quick question", 2),
    ("rfq", "Pricing request – {company}", 2),
]
_SUBJ_INTERNAL = [
    ("int", "Pipeline review {weekday}", 3),
    ("int", "Handover: {company}", 3),
    ("int", "Can you cover my {weekday} call with {company}?", 3),
    ("int", "Q{q} forecast", 2),
    ("int", "Discount approval for {company} ({pct}%)", 3),
    ("int", "Lunch?", 1),
    ("int", "Team offsite – dates", 1),
    ("int", "Notes from {company} call", 3),
]

_GREET = ["Hi {first},", "Hi {first},", "Hello {first},", "{first},", "Hey {first},",
          "Dear {first},", "Hi {first}!", "Morning {first},"]
_GREET_DE = ["Hallo {first},", "Liebe/r {first},", "Hi {first},"]
_CLOSE = ["Best,", "Thanks,", "Cheers,", "Kind regards,", "Best regards,", "Thanks!", "Talk soon,"]
_CLOSE_DE = ["Viele Grüße,", "Beste Grüße,", "Danke und Grüße,"]

_LINES = {
    "pricing": [
        "As discussed, here is the pricing for the {quarter} rollout of {product}.",
        "For {seats} seats we can do ${price} per seat per year on a 24-month term.",
        "That includes onboarding, SSO and the {area} dashboards your team asked about.",
        "The quote is valid until the end of {month}.",
        "If procurement needs a formal PDF I can send one over today.",
        "Happy to walk your finance team through the numbers on a quick call.",
        "We can also phase the rollout: {seats} seats now and the rest in {quarter}.",
    ],
    "followup": [
        "Thanks again for your time on {weekday}, great to hear how {company} runs {area}.",
        "As promised, I'm sending over the deck and a short summary of what we covered.",
        "Next step on our side is a technical session with your data team.",
        "Could you let me know who else should be in that conversation?",
        "I've also included the case study from {othercompany} we talked about.",
        "Would {weekday} at {time} work for a 30-minute follow-up?",
    ],
    "proposal": [
        "Please find our proposal for {product} attached.",
        "It covers {seats} seats, implementation support and a dedicated CSM.",
        "We priced it at ${price} per seat per year, billed annually.",
        "Let me know if the scope matches what you had in mind.",
        "I'd love to get your feedback before your budget meeting in {month}.",
    ],
    "nextsteps": [
        "Quick recap of where we landed: pilot with {seats} users in {quarter}.",
        "On our side: security review docs and a draft order form by {weekday}.",
        "On your side: confirm the pilot team and the success criteria.",
        "Does that match your notes?",
        "Shout if anything is missing.",
    ],
    "renewal": [
        "Your subscription for {product} renews on {day} {month}.",
        "Usage grew nicely this year – {pct}% more weekly active users than last year.",
        "I'd like to set up 20 minutes to review the renewal and a few new features.",
        "We can keep pricing flat if we sign before the end of {month}.",
    ],
    "demo": [
        "Here is the recording of {weekday}'s demo and the slides.",
        "The part about the {area} dashboards starts around minute 14.",
        "I've also set up a sandbox for your team to try {product}.",
        "Let me know if any questions come up from the wider team.",
        "Would {weekday} at {time} work for the demo?",
    ],
    "question": [
        "Quick question: how does your team currently report on {area}?",
        "We see a lot of teams at your stage stitching spreadsheets together.",
        "If that rings a bell, I'd be happy to show you how {othercompany} solved it.",
        "No pressure either way, just let me know.",
    ],
    "security": [
        "Attached is our completed security questionnaire.",
        "We are SOC 2 Type II certified; the report is available under NDA.",
        "Data is hosted in the EU or US depending on your preference.",
        "Let me know if your security team needs anything else.",
    ],
    "contract": [
        "Attached is v{n} of the contract with our comments on your redlines.",
        "We accepted the changes to the liability cap and the payment terms.",
        "Section 7.2 (data retention) still needs a decision from your legal team.",
        "Could we aim to sign by {weekday}?",
    ],
    "onboarding": [
        "Welcome aboard! We're excited to get {company} started with {product}.",
        "I've scheduled the kickoff for {weekday} at {time} (invite to follow).",
        "Please bring whoever owns your {area} data.",
        "Before the call, it would help to have read-only access to your warehouse.",
    ],
    "checkin": [
        "Just checking in to see how things are going with {product}.",
        "Anything I can help with before the end of the quarter?",
        "We've just shipped scheduled exports, which I think your team asked for.",
        "Let me know if a quick call would be useful.",
    ],
    "meeting": [
        "Would you have 30 minutes next week to catch up?",
        "I'm free {weekday} at {time} or Thursday afternoon.",
        "I'll be in {city} on {weekday} if you'd rather meet in person.",
        "Feel free to suggest another time that works better.",
    ],
    "case": [
        "Thought this might be relevant: {othercompany} cut their reporting time by {pct}%.",
        "They had a very similar setup to yours on the {area} side.",
        "Happy to connect you with their Head of Data if you want to hear it first-hand.",
    ],
    "invoice": [
        "We received invoice {inv} but the PO number is missing.",
        "Could you reissue it with PO {po}?",
        "Our accounts payable team can't process it otherwise.",
        "Thanks for sorting this out.",
    ],
    "rfq": [
        "We're looking at {product} for roughly {seats} users.",
        "Could you send over a quote, including onboarding?",
        "We'd need it by {weekday} for our internal review.",
        "Also, do you offer discounts for multi-year terms?",
    ],
    "support": [
        "Since {weekday} the {area} dashboard export fails with a timeout.",
        "It happens for every date range longer than a month.",
        "Is this a known issue? Our board pack is due on {day} {month}.",
        "Screenshots are below, let me know if you need more details.",
    ],
    "reschedule": [
        "Something came up on my side, could we move our call to {weekday}?",
        "{time} would work best for me, but I'm flexible.",
        "Apologies for the short notice.",
    ],
    "eval": [
        "We're evaluating {product} alongside two other vendors.",
        "How do you handle row-level permissions?",
        "Can we connect more than one warehouse?",
        "And is there an on-premise option?",
        "A short call with a solutions engineer would help.",
    ],
    "reply_contact": [
        "Thanks {first}, this looks good.",
        "Thanks for sending this over.",
        "Let me review with the team and come back to you by {weekday}.",
        "Could you send over the updated quote with {seats} seats?",
        "We're aligned on the scope; procurement will reach out about the contract.",
        "{weekday} at {time} works for me.",
        "Unfortunately {weekday} doesn't work. How about the week after?",
        "One question: does the price include SSO?",
        "I shared the deck internally and the feedback was positive.",
        "Our budget for this is approved for {quarter}.",
        "Can we get a sandbox to test with our own data?",
        "I'll loop in our IT team for the security review.",
        "Sounds great, thanks!",
    ],
    "reply_rep": [
        "Thanks {first}, really appreciate the quick reply.",
        "Great, I've sent a calendar invite for {weekday} at {time}.",
        "Yes, SSO is included in all plans.",
        "Updated quote attached: {seats} seats at ${price} per seat.",
        "I've set up the sandbox; credentials will arrive in a separate email.",
        "No problem at all, {weekday} works.",
        "I'll check with our product team and get back to you today.",
        "Good question: yes, multiple warehouses are supported.",
        "Let me know if there's anything else you need from us.",
        "I've added {colleague} from our solutions team who can help with the technical side.",
    ],
    "intro": [
        "As promised, I'm introducing {colleague}, who leads our solutions team.",
        "{colleague} has helped {othercompany} with a very similar {area} setup.",
        "I'll let you two find a time – {colleague}, over to you!",
        "{first} is {title} at {company} and is looking at options for {area} reporting.",
    ],
    "int": [
        "Can you take a look at the {company} deal before {weekday}?",
        "They're asking for {pct}% off a 2-year term. I think we can justify it.",
        "I'm out on {weekday}; could you cover the call with {company}?",
        "Notes are in the shared doc, the main open point is {area}.",
        "Pipeline for {quarter} looks healthy, but two deals slipped.",
        "Let's sync on this after standup.",
        "FYI: {contact} at {company} mentioned they're also talking to a competitor.",
        "Happy to help, send me the invite.",
        "Sure, I'll take it.",
    ],
}
_LINES_DE = {
    "pricing": [
        "anbei wie besprochen unser Angebot für {product}.",
        "Für {seats} Nutzer liegen wir bei {price} € pro Nutzer und Jahr.",
        "Das Angebot ist bis Ende {month} gültig.",
        "Gerne gehe ich die Details in einem kurzen Telefonat mit Ihnen durch.",
    ],
    "meeting": [
        "hätten Sie nächste Woche 30 Minuten Zeit für ein kurzes Gespräch?",
        "Mir würde {weekday} um {time} gut passen.",
        "Alternativ gerne auch Donnerstagnachmittag.",
    ],
    "followup": [
        "vielen Dank für das Gespräch am {weekday}.",
        "Anbei die Präsentation und eine kurze Zusammenfassung.",
        "Als nächsten Schritt schlage ich einen technischen Termin mit Ihrem Datenteam vor.",
        "Wer sollte aus Ihrer Sicht noch dabei sein?",
    ],
}



def _wrap_templates(pools: dict) -> None:
    """Hard-wrap template sentences like plain-text mailers do (~72 columns once
    the placeholders are filled in), so bodies rarely need QP soft breaks."""
    for key, lines in pools.items():
        pools[key] = [textwrap.fill(ln, width=58, break_long_words=False,
                                    break_on_hyphens=False).replace("\n", "\r\n")
                      for ln in lines]


_wrap_templates(_LINES)
_wrap_templates(_LINES_DE)

_BULK_NEWS = [
    ("SaaS Weekly", "newsletter@saasweekly.com", "mail.saasweekly.com"),
    ("The Revenue Letter", "hello@revenueletter.co", "send.revenueletter.co"),
    ("B2B Growth Digest", "digest@b2bgrowth.io", "em.b2bgrowth.io"),
    ("Pipeline Insider", "news@pipelineinsider.com", "mail.pipelineinsider.com"),
    ("DataOps Monthly", "editors@dataopsmonthly.com", "bounce.dataopsmonthly.com"),
]
_NEWS_TOPICS = [
    "Why forecast accuracy is the new north star", "10 cold email subject lines that still work",
    "The state of RevOps in {year}", "Pricing pages that convert", "What we learned from 500 demos",
    "Webinar: building a data-driven sales team", "Your {month} product update",
    "AI in the sales stack: hype vs. reality", "How to run a QBR your customers enjoy",
]
_BULK_NOTIFY = [
    ("Ledgerly Billing", "no-reply@billing.ledgerly.io", "Your invoice {inv} from Ledgerly is ready"),
    ("CalendarHub", "no-reply@calendarhub.com", "Invitation: {company} <> {org} @ {weekday} {time}"),
    ("SignFlow", "no-reply@signflow.com", "Completed: Order form – {company}"),
    ("Zoomly", "no-reply@zoomly.us", "Cloud recording – {company} sync is now available"),
    ("LinkedOut", "notifications-noreply@linkedout.com", "{contact} viewed your profile"),
    ("Expensio", "no-reply@expensio.com", "Your expense report “{city} trip” was approved"),
    ("DocuDrive", "drive-shares-noreply@docudrive.com", "{contact} shared “{company} – {quarter} plan” with you"),
    ("Statuspage", "no-reply@status.cloudwarehouse.net", "[Resolved] Elevated query latency in eu-west-1"),
]
_NOTIFY_LINES = [
    "This is an automated message, please do not reply.",
    "You are receiving this email because of your account settings.",
    "View it in your browser: https://app.example.net/n/{hex}",
    "Manage notification preferences: https://app.example.net/settings/notifications",
    "Questions? Visit our help center.",
]

_MAILER_UA = {
    "apple": "X-Mailer: Apple Mail (2.3774.500.171.1.1)\r\n",
    "thunderbird": "User-Agent: Mozilla Thunderbird\r\n",
    "generic": "X-Mailer: Roundcube Webmail/1.6.6\r\n",
}

_HTML_QUOTE_OPEN = ('<br>\r\n<div class="gmail_quote">\r\n<div dir="ltr" '
                    'class="gmail_attr">\r\n')
_HTML_QUOTE_MID = ('<br></div>\r\n<blockquote class="gmail_quote"\r\n style="margin:0px 0px 0px'
                   ' 0.8ex;\r\n border-left:1px solid rgb(204,204,204);\r\n padding-left:1ex">\r\n')
_HTML_OUTLOOK_OPEN = ('<html><head>\r\n<meta http-equiv="Content-Type"\r\n content="text/html;'
                      ' charset=utf-8">\r\n</head>\r\n<body>\r\n<div style="font-family:'
                      ' Calibri,\r\n Arial, Helvetica, sans-serif; font-size: 11pt;">\r\n')

_WD = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MON = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
