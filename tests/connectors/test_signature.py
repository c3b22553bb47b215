"""The signature extractor and the quote cutter over generated, real-world shaped mail.

The cases are built from templates (names, titles and companies of eight languages,
the phone formats of nine countries, eight layouts, separators, valedictions, mobile
footers, disclaimers, vCards) with a fixed seed; the expected values come from the
generator, never from the extractor. Phones are checked in E.164, which the generator
knows from the country code and national number it drew.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings, strategies as st

from connectors.normalise import company_display, company_matches_domain, e164, person_name, region_of_domain
from connectors.quoted import own_text
from connectors.signature import extract


@dataclass(frozen=True)
class Country:
    region: str
    tld: str
    cc: str
    # (national significant number, national format, international format) makers
    landline: tuple
    mobile: tuple
    lang: str


def _digits(rng: random.Random, n: int) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(n))


def _gb(rng):
    b = _digits(rng, 4)
    return "207946" + b, f"020 7946 {b}", rng.choice([f"+44 20 7946 {b}", f"+44 (0)20 7946 {b}"])


def _gb_m(rng):
    b = _digits(rng, 3)
    return "7700900" + b, f"07700 900{b}", f"+44 7700 900{b}"


def _de(rng):
    b = _digits(rng, 7)
    return "30" + b, rng.choice([f"030 {b}", f"030/{b[:3]} {b[3:5]} {b[5:]}"]), f"+49 30 {b}"


def _de_m(rng):
    b = _digits(rng, 7)
    return "171" + b, f"0171 {b}", f"+49 171 {b}"


def _fr(rng):
    b = _digits(rng, 8)
    p = [b[i : i + 2] for i in range(0, 8, 2)]
    return "1" + b, rng.choice(["01 " + " ".join(p), "01." + ".".join(p)]), "+33 1 " + " ".join(p)


def _fr_m(rng):
    b = _digits(rng, 8)
    p = [b[i : i + 2] for i in range(0, 8, 2)]
    return "6" + b, "06 " + " ".join(p), "+33 6 " + " ".join(p)


def _es(rng):
    b = _digits(rng, 6)
    return "912" + b, f"912 {b[:3]} {b[3:]}", f"+34 912 {b[:3]} {b[3:]}"


def _es_m(rng):
    b = _digits(rng, 6)
    return "612" + b, f"612 {b[:3]} {b[3:]}", f"+34 612 {b[:3]} {b[3:]}"


def _it(rng):
    b = _digits(rng, 8)
    return "02" + b, f"02 {b[:4]} {b[4:]}", f"+39 02 {b[:4]} {b[4:]}"


def _it_m(rng):
    b = _digits(rng, 7)
    return "347" + b, f"347 {b[:3]} {b[3:]}", f"+39 347 {b[:3]} {b[3:]}"


def _nl(rng):
    b = _digits(rng, 7)
    return "20" + b, f"020-{b[:3]} {b[3:]}", f"+31 20 {b[:3]} {b[3:]}"


def _nl_m(rng):
    b = _digits(rng, 8)
    return "6" + b, f"06-{b}", f"+31 6 {b}"


def _pt(rng):
    b = _digits(rng, 7)
    return "21" + b, f"21 {b[:3]} {b[3:]}", f"+351 21 {b[:3]} {b[3:]}"


def _pt_m(rng):
    b = _digits(rng, 6)
    return "912" + b, f"912 {b[:3]} {b[3:]}", f"+351 912 {b[:3]} {b[3:]}"


def _se(rng):
    b = _digits(rng, 7)
    return "8" + b, f"08-{b[:3]} {b[3:5]} {b[5:]}", f"+46 8 {b[:3]} {b[3:5]} {b[5:]}"


def _se_m(rng):
    b = _digits(rng, 7)
    return "70" + b, f"070-{b[:3]} {b[3:5]} {b[5:]}", f"+46 70 {b[:3]} {b[3:5]} {b[5:]}"


def _us(rng):
    b = _digits(rng, 2)
    return "41555501" + b, rng.choice([f"(415) 555-01{b}", f"415.555.01{b}"]), f"+1 (415) 555-01{b}"


def _us_m(rng):
    b = _digits(rng, 2)
    return "64655501" + b, f"(646) 555-01{b}", f"+1 646 555 01{b}"


COUNTRIES = [
    Country("GB", "co.uk", "44", _gb, _gb_m, "en"),
    Country("DE", "de", "49", _de, _de_m, "de"),
    Country("FR", "fr", "33", _fr, _fr_m, "fr"),
    Country("ES", "es", "34", _es, _es_m, "es"),
    Country("IT", "it", "39", _it, _it_m, "it"),
    Country("NL", "nl", "31", _nl, _nl_m, "nl"),
    Country("PT", "pt", "351", _pt, _pt_m, "pt"),
    Country("SE", "se", "46", _se, _se_m, "sv"),
    Country("US", "com", "1", _us, _us_m, "en"),
]
ORG_REGION = "US"  # the organisation's default region, for .com senders

FIRST = ["Rory", "Anna", "Klaus", "Émilie", "Javier", "Giulia", "Sanne", "João", "Ingrid", "Priya", "Liam", "Zoë"]
LAST = ["Adams", "Berger", "Dubois", "García", "Rossi", "de Vries", "Silva", "Lindqvist", "O'Neill", "Nakamura"]
TITLES = {
    "en": ["Head of Procurement", "Sales Director", "Senior Account Manager", "Chief Financial Officer", "IT Lead"],
    "de": ["Vertriebsleiter", "Leiterin Einkauf", "Geschäftsführer", "Key Account Manager"],
    "fr": ["Directeur commercial", "Responsable des achats", "Chargée d'affaires"],
    "es": ["Director Comercial", "Jefa de Compras", "Gerente de Ventas"],
    "it": ["Responsabile Acquisti", "Direttore Vendite", "Consulente Tecnico"],
    "nl": ["Inkoper", "Accountmanager", "Directeur"],
    "pt": ["Diretor Comercial", "Gestora de Compras", "Engenheira de Vendas"],
    "sv": ["Inköpschef", "Säljare", "VD"],
}
COMPANIES = {
    "GB": [("Aurora Telecom", "plc"), ("Northwind Logistics", "Ltd")],
    "DE": [("Nordlicht Maschinenbau", "GmbH"), ("Kessler Antriebe", "AG")],
    "FR": [("Lumière Conseil", "SAS"), ("Atelier Dubois", "SARL")],
    "ES": [("Soluciones Iberia", "S.L."), ("Castell Industrial", "S.A.")],
    "IT": [("Rossi Forniture", "S.r.l."), ("Officine Bianchi", "S.p.A.")],
    "NL": [("Van Dijk Techniek", "B.V."), ("Polder Systems", "B.V.")],
    "PT": [("Tejo Sistemas", "Lda."), ("Atlântico Energia", "S.A.")],
    "SE": [("Nordkust Data", "AB"), ("Fjällbacka Verktyg", "AB")],
    "US": [("Pinecrest Software", "Inc."), ("Harbor Analytics", "LLC")],
}
VALEDICTIONS = {
    "en": ["Best regards,", "Kind regards,", "Regards,", "Thanks,", "Cheers,", "Best,"],
    "de": ["Mit freundlichen Grüßen", "Viele Grüße", "Beste Grüße,"],
    "fr": ["Cordialement,", "Bien à vous,", "Bien cordialement"],
    "es": ["Saludos,", "Un saludo,", "Atentamente,"],
    "it": ["Cordiali saluti,", "Distinti saluti", "Saluti,"],
    "nl": ["Met vriendelijke groet,", "Groeten,", "Met vriendelijke groeten"],
    "pt": ["Atenciosamente,", "Cumprimentos,", "Abraços,"],
    "sv": ["Med vänliga hälsningar", "Vänliga hälsningar,", "Hälsningar,"],
}
LABELS = {  # (phone label, mobile label, fax label)
    "en": [("T:", "M:", "F:"), ("Tel:", "Mobile:", "Fax:"), ("Phone:", "Cell:", "Fax:"), ("Direct:", "Mob:", "F:")],
    "de": [("Tel.:", "Mobil:", "Fax:"), ("Telefon:", "Handy:", "Telefax:")],
    "fr": [("Tél. :", "Portable :", "Fax :"), ("Tél :", "Mobile :", "Fax :")],
    "es": [("Tel.:", "Móvil:", "Fax:"), ("Teléfono:", "Móvil:", "Fax:")],
    "it": [("Tel.", "Cell.", "Fax"), ("Tel:", "Cellulare:", "Fax:")],
    "nl": [("T", "M", "F"), ("Telefoon:", "Mobiel:", "Fax:")],
    "pt": [("Tel.:", "Telemóvel:", "Fax:"), ("Telefone:", "Celular:", "Fax:")],
    "sv": [("Tel:", "Mobil:", "Fax:"), ("Växel:", "Mobil:", "Fax:")],
}
GREETING = {
    "en": "Hi Sam,\n\nThanks for the proposal, we'd like to go ahead with the annual plan.\n",
    "de": "Hallo Herr Meier,\n\nvielen Dank für das Angebot, wir möchten gerne bestellen.\n",
    "fr": "Bonjour Sam,\n\nMerci pour la proposition, nous souhaitons avancer.\n",
    "es": "Hola Sam,\n\nGracias por la propuesta, queremos seguir adelante.\n",
    "it": "Ciao Sam,\n\ngrazie per la proposta, vorremmo procedere.\n",
    "nl": "Hoi Sam,\n\nBedankt voor het voorstel, we willen graag doorgaan.\n",
    "pt": "Olá Sam,\n\nObrigado pela proposta, queremos avançar.\n",
    "sv": "Hej Sam,\n\nTack för förslaget, vi vill gärna gå vidare.\n",
}
# The quoted reply under the own text, in the sender's language; it holds our rep's
# own signature, which must never be read as the sender's.
QUOTES = {
    "en": [
        "On Mon, 3 Mar 2025 at 10:02, Sam Rep <sam@ourco.com> wrote:\n> Hi,\n> --\n> Sam Rep\n> Account Executive\n> +1 212 555 0100",
        "From: Sam Rep <sam@ourco.com>\nSent: Monday, March 3, 2025 10:02 AM\nTo: x\nSubject: Quote\n\nSam Rep\nAccount Executive | OurCo Inc.\nT: +1 212 555 0100",
        "-----Original Message-----\nFrom: Sam Rep\nSam Rep\nAccount Executive\nTel: +1 212 555 0100",
        "________________________________\nFrom: Sam Rep <sam@ourco.com>\nSent: 3 March 2025 10:02\nSam Rep\nT: +1 212 555 0100",
    ],
    "de": [
        "Am 03.03.2025 um 10:02 schrieb Sam Rep <sam@ourco.com>:\n> Hallo\n> Sam Rep\n> Tel.: +1 212 555 0100",
        "Von: Sam Rep <sam@ourco.com>\nGesendet: Montag, 3. März 2025 10:02\nAn: x\nBetreff: Angebot\n\nSam Rep\nTel.: +1 212 555 0100",
        "----- Ursprüngliche Nachricht -----\nVon: Sam Rep\nSam Rep\nTel.: +1 212 555 0100",
    ],
    "fr": [
        "Le lun. 3 mars 2025 à 10:02, Sam Rep <sam@ourco.com> a écrit :\n> Bonjour\n> Sam Rep\n> Tél : +1 212 555 0100",
        "De : Sam Rep <sam@ourco.com>\nEnvoyé : lundi 3 mars 2025 10:02\nÀ : x\nObjet : Devis\n\nSam Rep\nTél : +1 212 555 0100",
    ],
    "es": [
        "El lun, 3 mar 2025 a las 10:02, Sam Rep (<sam@ourco.com>) escribió:\n> Hola\n> Sam Rep\n> Tel.: +1 212 555 0100",
        "De: Sam Rep <sam@ourco.com>\nEnviado: lunes, 3 de marzo de 2025 10:02\nPara: x\n\nSam Rep\nTel.: +1 212 555 0100",
    ],
    "it": [
        "Il giorno lun 3 mar 2025 alle ore 10:02 Sam Rep <sam@ourco.com> ha scritto:\n> Ciao\n> Sam Rep\n> Tel. +1 212 555 0100",
        "Da: Sam Rep <sam@ourco.com>\nInviato: lunedì 3 marzo 2025 10:02\nA: x\n\nSam Rep\nTel. +1 212 555 0100",
    ],
    "nl": [
        "Op ma 3 mrt. 2025 om 10:02 schreef Sam Rep <sam@ourco.com>:\n> Hoi\n> Sam Rep\n> T +1 212 555 0100",
        "Van: Sam Rep <sam@ourco.com>\nVerzonden: maandag 3 maart 2025 10:02\nAan: x\n\nSam Rep\nT +1 212 555 0100",
    ],
    "pt": [
        "Em seg., 3 de mar. de 2025 às 10:02, Sam Rep <sam@ourco.com> escreveu:\n> Olá\n> Sam Rep\n> Tel.: +1 212 555 0100",
        "De: Sam Rep <sam@ourco.com>\nEnviada: segunda-feira, 3 de março de 2025 10:02\n\nSam Rep\nTel.: +1 212 555 0100",
    ],
    "sv": [
        "Den mån 3 mars 2025 kl 10:02 skrev Sam Rep <sam@ourco.com>:\n> Hej\n> Sam Rep\n> Tel: +1 212 555 0100",
        "Från: Sam Rep <sam@ourco.com>\nSkickat: den 3 mars 2025 10:02\nTill: x\n\nSam Rep\nTel: +1 212 555 0100",
    ],
}
DISCLAIMERS = [
    "This email and any attachments are confidential and intended solely for the use of the addressee. If you are not the intended recipient please delete it.",
    "Diese E-Mail enthält vertrauliche und/oder rechtlich geschützte Informationen. Wenn Sie nicht der richtige Adressat sind, informieren Sie bitte sofort den Absender.",
    "CONFIDENTIAL: the information contained in this message is privileged and intended only for the recipients named above.",
]
FOOTERS = [
    "Sent from my iPhone",
    "Von meinem iPhone gesendet",
    "Envoyé de mon iPhone",
    "Enviado desde mi iPhone",
    "Get Outlook for iOS",
]
LAYOUTS = ["lines", "delimiter", "pipes", "title_at", "labelled", "vcard", "inline_phones", "no_valediction"]


@dataclass(frozen=True)
class Case:
    text: str
    name: str
    domain: str
    region: str
    title: str | None
    company: str | None
    phone: str | None  # E.164
    mobile: str | None
    website: str | None


def _ascii(word: str) -> str:
    table = str.maketrans("àâäáãéèêëíìîïóòôöõúùûüçñåø", "aaaaaeeeeiiiiooooouuuucnao")
    return "".join(ch for ch in word.lower().translate(table) if ch.isalnum())


def make_case(index: int) -> Case:
    rng = random.Random(index)
    country = COUNTRIES[index % len(COUNTRIES)]
    layout = LAYOUTS[(index // len(COUNTRIES)) % len(LAYOUTS)]
    lang = country.lang
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    title = rng.choice(TITLES[lang])
    base, suffix = rng.choice(COMPANIES[country.region])
    company = f"{base} {suffix}"
    domain = "-".join(_ascii(w) for w in base.split()) + "." + country.tld
    land_nsn, land_nat, land_int = country.landline(rng)
    mob_nsn, mob_nat, mob_int = country.mobile(rng)
    land = rng.choice([land_nat, land_int])
    mob = rng.choice([mob_nat, mob_int])
    phone_label, mobile_label, fax_label = rng.choice(LABELS[lang])
    website = rng.choice([f"www.{domain}", f"https://www.{domain}", f"https://{domain}/"])
    shown_site = website.rstrip("/")
    with_mobile = rng.random() < 0.7
    with_site = rng.random() < 0.7
    with_fax = rng.random() < 0.3
    fax = f"{fax_label} {land_int[:-2]}99"
    val = rng.choice(VALEDICTIONS[lang])
    exp_phone, exp_mobile = f"+{country.cc}{land_nsn}", f"+{country.cc}{mob_nsn}" if with_mobile else None
    exp_title, exp_company = title, company
    if layout == "lines":
        sig = [val, name, title, company, f"{phone_label} {land}"]
        if with_fax:
            sig.append(fax)
        if with_mobile:
            sig.append(f"{mobile_label} {mob}")
        if with_site:
            sig.append(website)
    elif layout == "delimiter":
        sig = [
            "-- ",
            name,
            title,
            company,
            f"{phone_label} {land}" + (f" | {mobile_label} {mob}" if with_mobile else ""),
        ]
        if with_fax:
            sig.append(fax)
        if with_site:
            sig.append(website)
    elif layout == "pipes":
        contact = f"{phone_label} {land}" + (f" | {mobile_label} {mob}" if with_mobile else "")
        sig = [val, "", f"{name} | {title} | {company}", contact + (f" | {website}" if with_site else "")]
    elif layout == "title_at":
        joiner = {
            "en": "at",
            "de": "bei",
            "fr": "chez",
            "es": "en",
            "it": "presso",
            "nl": "bij",
            "pt": "na",
            "sv": "på",
        }[lang]
        sig = [val, name, f"{title} {joiner} {company}", f"{phone_label} {land}"]
        if with_mobile:
            sig.append(f"{mobile_label} {mob}")
        if with_site:
            sig.append(website)
    elif layout == "labelled":
        title_label = {
            "en": "Position",
            "de": "Funktion",
            "fr": "Poste",
            "es": "Cargo",
            "it": "Ruolo",
            "nl": "Functie",
            "pt": "Cargo",
            "sv": "Befattning",
        }[lang]
        company_label = {
            "en": "Company",
            "de": "Firma",
            "fr": "Société",
            "es": "Empresa",
            "it": "Azienda",
            "nl": "Bedrijf",
            "pt": "Empresa",
            "sv": "Företag",
        }[lang]
        sig = ["--", name, f"{title_label}: {title}", f"{company_label}: {company}", f"{phone_label} {land}"]
        if with_mobile:
            sig.append(f"{mobile_label} {mob}")
        if with_site:
            sig.append(f"Web: {website}")
    elif layout == "vcard":
        sig = [
            val,
            "",
            "BEGIN:VCARD",
            "VERSION:3.0",
            f"FN:{name}",
            f"TITLE:{title}",
            f"ORG:{company};Sales",
            f"TEL;TYPE=WORK,VOICE:{land}",
        ]
        if with_fax:
            sig.append(f"TEL;TYPE=FAX:{land_int[:-2]}99")
        if with_mobile:
            sig.append(f"TEL;TYPE=CELL:{mob}")
        if with_site:
            sig.append(f"URL:{website}")
        sig.append("END:VCARD")
    elif layout == "inline_phones":
        sig = [val, name, f"{title}, {company}", f"{land}" + (f" / {mobile_label} {mob}" if with_mobile else "")]
        if with_site:
            sig.append(website)
    else:  # no_valediction: a bare name and block under the text
        sig = ["", name, title, company, f"{phone_label} {land}"]
        if with_mobile:
            sig.append(f"{mobile_label} {mob}")
        if with_site:
            sig.append(website)
    text = GREETING[lang] + "\n" + "\n".join(sig) + "\n"
    if rng.random() < 0.3:
        text += "\n" + rng.choice(DISCLAIMERS) + "\n"
    if rng.random() < 0.25:
        text += "\n" + rng.choice(FOOTERS) + "\n"
    if rng.random() < 0.7:
        text += "\n" + rng.choice(QUOTES[lang]) + "\n"
    if rng.random() < 0.3:
        text = text.replace("\n", "\r\n")
    return Case(
        text,
        name,
        domain,
        country.region,
        exp_title,
        exp_company,
        exp_phone,
        exp_mobile,
        shown_site if with_site else None,
    )


CASES = [make_case(i) for i in range(240)]


@pytest.mark.parametrize("case", CASES, ids=[f"{i}-{c.region}-{LAYOUTS[(i // 9) % 8]}" for i, c in enumerate(CASES)])
def test_signature_fields_are_read_from_the_senders_own_signature(case: Case):
    sig = extract(case.text, case.name, case.domain)
    assert sig is not None, case.text
    region = region_of_domain(case.domain) or ORG_REGION
    assert (sig.title, sig.company) == (case.title, case.company), case.text
    assert e164(sig.phone, region) == case.phone, case.text
    assert e164(sig.mobile, region) == case.mobile, case.text
    assert sig.website == case.website, case.text


def test_the_generated_cases_cover_every_language_layout_and_quote_style():
    assert len(CASES) >= 200
    assert {(i % 9, (i // 9) % 8) for i in range(len(CASES))} == {(c, layout) for c in range(9) for layout in range(8)}
    quoted = [c for c in CASES if "sam@ourco.com" in c.text or "Original" in c.text or "Ursprüngliche" in c.text]
    assert len(quoted) > 100


def test_a_message_without_a_signature_gives_nothing():
    assert extract("Hi Sam,\n\nsee you tomorrow at the office.\n\nRory\n") is None
    assert extract("") is None
    assert (
        extract("Thanks!\n\nOn Mon, 3 Mar 2025, Sam <sam@ourco.com> wrote:\n> --\n> Sam\n> T: +44 20 7946 0000") is None
    )


def test_a_fax_number_is_never_taken_for_the_phone():
    sig = extract("Regards,\nAnna Berger\nFax: +49 30 1234599\nTel.: +49 30 1234567\n", "Anna Berger", "x.de")
    assert sig is not None and sig.phone == "+49 30 1234567" and sig.mobile is None


def test_social_links_are_not_the_website():
    sig = extract("Best,\nRory Adams\nSales Director\nhttps://www.linkedin.com/in/rory\nwww.aurora.com\n", "Rory Adams")
    assert sig is not None and sig.website == "www.aurora.com"


@pytest.mark.parametrize(
    "text",
    [
        "Sounds good.\n\nOn Mon, Mar 3, 2025 at 10:02 AM Sam Rep <sam@ourco.com>\nwrote:\n\nold",
        "Sounds good.\nAm Mo., 3. März 2025 um 10:02 Uhr schrieb Sam Rep <sam@ourco.com>:\nalt",
        "Sounds good.\nLe lun. 3 mars 2025 à 10:02, Sam Rep <sam@ourco.com> a écrit :\nancien",
        "Sounds good.\nEl lun, 3 mar 2025 a las 10:02, Sam Rep (<sam@ourco.com>) escribió:\nviejo",
        "Sounds good.\nIl giorno lun 3 mar 2025 alle ore 10:02 Sam Rep <sam@ourco.com> ha scritto:\nvecchio",
        "Sounds good.\nOp ma 3 mrt. 2025 om 10:02 schreef Sam Rep <sam@ourco.com>:\noud",
        "Sounds good.\nEm seg., 3 de mar. de 2025 às 10:02, Sam Rep <sam@ourco.com> escreveu:\nvelho",
        "Sounds good.\nDen mån 3 mars 2025 kl 10:02 skrev Sam Rep <sam@ourco.com>:\ngammal",
        "Sounds good.\nFrom: Sam Rep <sam@ourco.com>\nSent: Monday, March 3, 2025 10:02 AM\nold",
        "Sounds good.\n*From:* Sam Rep <sam@ourco.com>\n*Sent:* Monday, March 3, 2025 10:02 AM\nold",
        "Sounds good.\nVon: Sam Rep <sam@ourco.com>\nGesendet: Montag, 3. März 2025 10:02\nalt",
        "Sounds good.\nDe : Sam Rep <sam@ourco.com>\nEnvoyé : lundi 3 mars 2025 10:02\nancien",
        "Sounds good.\nDe: Sam Rep <sam@ourco.com>\nEnviado el: lunes, 3 de marzo de 2025 10:02\nFecha: x\nviejo",
        "Sounds good.\nDa: Sam Rep <sam@ourco.com>\nInviato: lunedì 3 marzo 2025 10:02\nvecchio",
        "Sounds good.\nVan: Sam Rep <sam@ourco.com>\nVerzonden: maandag 3 maart 2025 10:02\noud",
        "Sounds good.\nFrån: Sam Rep <sam@ourco.com>\nSkickat: den 3 mars 2025 10:02\ngammal",
        "Sounds good.\n-----Original Message-----\nold",
        "Sounds good.\n-------- Message d'origine --------\nancien",
        "Sounds good.\n________________________________\nold",
        "Sounds good.\n> old\n> older",
    ],
)
def test_the_own_text_stops_at_the_quoted_reply_in_every_common_language(text):
    own, quoted = own_text(text)
    assert quoted and own.strip() == "Sounds good."


def test_a_from_line_in_the_senders_own_words_is_not_a_quote():
    own, quoted = own_text("From: the warehouse, the goods left today.\nThey arrive Monday.")
    assert not quoted and "Monday" in own


@pytest.mark.parametrize(
    "display,expected",
    [
        ("Adams, Rory", ("Rory Adams", "", "")),
        ("Dr. Rory Adams Jr.", ("Rory Adams", "Dr.", "Jr.")),
        ("Mrs Jane Smith PhD", ("Jane Smith", "Mrs", "PhD")),
        ("Berger, Klaus", ("Klaus Berger", "", "")),
        ("Rory Adams", ("Rory Adams", "", "")),
        ("Aurora Sales Team", ("Aurora Sales Team", "", "")),
        ("", ("", "", "")),
    ],
)
def test_names_are_shown_in_reading_order_with_honorifics_and_suffixes_apart(display, expected):
    person = person_name(display)
    assert (person.name, person.honorific, person.suffix) == expected


@pytest.mark.parametrize(
    "raw,region,expected",
    [
        ("+44 (0)20 7946 0321", None, "+442079460321"),
        ("020 7946 0321", "GB", "+442079460321"),
        ("0044 20 7946 0321", None, "+442079460321"),
        ("030 1234567", "DE", "+49301234567"),
        ("030 1234567", None, None),  # no country: not guessed
        ("12", "GB", None),
    ],
)
def test_phones_are_normalised_to_e164_with_the_default_region(raw, region, expected):
    assert e164(raw, region) == expected


def test_the_region_comes_from_the_domains_country_tld():
    assert region_of_domain("aurora-telecom.co.uk") == "GB"
    assert region_of_domain("nordlicht.de") == "DE"
    assert region_of_domain("pinecrest.com") is None
    assert region_of_domain("startup.io") is None


def test_company_display_names_prefer_the_signature_else_split_the_domain():
    assert company_display("Aurora  Telecom plc", "aurora-telecom.co.uk") == "Aurora Telecom plc"
    assert company_display(None, "aurora-telecom.co.uk") == "Aurora Telecom"
    assert company_matches_domain("Aurora Telecom plc", "aurora-telecom.co.uk")
    assert company_matches_domain("International Business Machines", "ibm.com")
    assert not company_matches_domain("OurCo Inc.", "aurora-telecom.co.uk")


_FRAGMENTS = [
    "-- ",
    "Best regards,",
    "Mit freundlichen Grüßen",
    "Rory Adams",
    "Head of Sales | Aurora Telecom plc",
    "T: +44 20 7946 0321",
    "M: 07700 900123",
    "Fax: 030 1234",
    "www.aurora.co.uk",
    "BEGIN:VCARD",
    "TEL;TYPE=CELL:",
    "ORG:",
    "TITLE:",
    "Position:",
    "On Mon, Sam wrote:",
    "> quoted",
    "Sent from my iPhone",
    "|",
    "",
    "  ",
    "Von: x",
    "Gesendet: y",
    "_____________",
    "-----Original Message-----",
    "Director at ",
    "Ltd",
    ", ",
]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=40)), max_size=30),
    st.text(max_size=20),
    st.text(max_size=20),
)
def test_the_extractor_never_raises_and_never_returns_a_value_absent_from_the_text(parts, name, domain):
    text = "\n".join(parts)
    sig = extract(text, name, domain)
    if sig is not None:
        for value in (sig.name, sig.title, sig.company, sig.phone, sig.mobile, sig.website):
            assert value is None or (value and value in text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=3000))
def test_the_extractor_never_raises_on_arbitrary_text(text):
    sig = extract(text)
    assert sig is None or all(v is None or v in text for v in (sig.title, sig.company, sig.phone, sig.website))


# -- through the message parser (connectors/mailparse.py) ------------------------------------

_HEAD = (
    b"From: Rory Adams <rory@aurora-telecom.co.uk>\r\nTo: alice@ourco.com\r\nSubject: Quote\r\n"
    b"Date: Mon, 3 Mar 2025 10:00:00 +0000\r\nMessage-ID: <q@aurora>\r\n"
)


def _parse(body: bytes, ctype: str = "text/plain; charset=utf-8", **kw):
    from connectors.mailparse import parse_message_headers

    return parse_message_headers("1/1", _HEAD + f"Content-Type: {ctype}\r\n\r\n".encode(), None, body, **kw)


def test_an_html_only_signature_is_read_line_by_line():
    body = (
        b"<html><body><p>Hi Alice,</p><p>Thanks for the quote.</p><p>Kind regards,<br>Rory Adams<br>"
        b"Head of Procurement<br>Aurora Telecom plc<br>T: +44 20 7946 0321&nbsp;</p>"
        b'<div id="appendonsend"></div><hr><div><b>From:</b> Alice Rep<br><b>Sent:</b> Monday<br>old</div>'
        b"</body></html>"
    )
    record = _parse(body, "text/html; charset=utf-8")
    assert record.signature is not None
    assert (record.signature.title, record.signature.company) == ("Head of Procurement", "Aurora Telecom plc")
    assert record.signature.phone == "+44 20 7946 0321"
    assert record.snippet is not None and "Alice Rep" not in record.snippet and "old" not in record.snippet


def test_a_cut_off_text_without_a_quoted_part_gives_no_signature():
    body = (
        b"Hi,\n\n"
        + b"A long paragraph of text. " * 200
        + b"\n\nRegards,\nRory Adams\nSales Director\nT: 020 7946 0321\n"
    )
    assert _parse(body[:1500], truncated=True).signature is None  # where it ends is unknown
    assert _parse(body).signature is not None


def test_signatures_of_the_organisations_own_people_are_not_read():
    body = b"Hi,\n\nRegards,\nRory Adams\nSales Director\nT: 020 7946 0321\n"
    assert _parse(body, internal_domains=frozenset({"aurora-telecom.co.uk"})).signature is None
    assert _parse(body, internal_domains=frozenset({"ourco.com"})).signature is not None
