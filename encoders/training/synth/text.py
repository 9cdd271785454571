"""Fictional text content: names, places, numbers, words and multilingual labels.

Why: documents must carry plausible-looking but entirely invented content
(no real people); labels are translated so that templates differ by language
the way real documents of different countries do.
"""
from __future__ import annotations

import numpy as np

Rng = np.random.Generator

_ON = ["b", "br", "c", "ch", "d", "dr", "f", "g", "gr", "h", "j", "k", "kl", "l", "m", "n", "p", "pr",
       "r", "s", "sch", "st", "t", "tr", "v", "w", "z", ""]
_NU = ["a", "e", "i", "o", "u", "ai", "ei", "ou", "ia", "y", "ae", "io"]
_CO = ["", "n", "r", "l", "s", "m", "t", "nd", "rt", "ck", "ns", "x", "ll"]

CJK_SURNAMES = {
    "zh": list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾"),
    "ja": ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤", "吉田", "山田",
           "松本", "井上", "木村", "清水", "森", "池田", "橋本", "石川"],
    "ko": list("김이박최정강조윤장임한오서신권황안송류홍"),
}
CJK_GIVEN = {
    "zh": list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志文辉玉兰淑珍婷雪"),
    "ja": ["花子", "太郎", "健", "美咲", "翔太", "陽菜", "大輝", "結衣", "蓮", "さくら", "悠斗", "葵",
           "一郎", "由美", "直樹", "真由美", "拓也", "愛", "恵子", "誠"],
    "ko": list("민서준지현우수영하은도호진성연아나희재경태"),
}
CJK_PLACE = {
    "zh": list("东西南北中山海江河湖安宁平和新华福明光阳春秋青云龙凤天"),
    "ja": ["東", "西", "南", "北", "山", "川", "田", "原", "野", "島", "宮", "崎", "沢", "松", "桜", "青", "緑", "丘"],
    "ko": list("서울부산대구광주전수원성남강남마포해운중동신"),
}
CJK_TEXT = {
    "zh": list("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理"),
    "ja": list("のにはをたがでてとしれさあるいうかもなことすおりまよくらやじ日本人年月国会社時間事業生活料金番号書類申請記入欄"),
    "ko": list("이가는을를에의다고하서한도로기있지수대정사시자국인것그나전일보부위경제문한국학교회의원생활서류신청"),
}

_CITY_SUFFIX = ["burg", "ville", "stad", "ford", "ham", "heim", "polis", "mouth", "ton", "field", "berg", "haven", "sund"]
_STREET = {
    "en": ["Street", "Road", "Avenue", "Lane", "Way", "Drive"],
    "de": ["Straße", "Weg", "Allee", "Gasse", "Platz"],
    "fr": ["rue", "avenue", "boulevard", "chemin", "place"],
    "es": ["Calle", "Avenida", "Paseo", "Plaza"],
    "it": ["Via", "Viale", "Piazza", "Corso"],
    "nl": ["straat", "laan", "weg", "plein"],
    "pt": ["Rua", "Avenida", "Travessa", "Largo"],
}
LATIN_LANGS = ["en", "fr", "de", "es", "it", "nl", "pt"]
CJK_LANGS = ["zh", "ja", "ko"]


def is_cjk(lang: str) -> bool:
    return lang in CJK_LANGS


def word(r: Rng, nsyl: int | None = None, cap: bool = True) -> str:
    n = int(nsyl if nsyl is not None else r.integers(1, 4))
    s = "".join(_ON[r.integers(len(_ON))] + _NU[r.integers(len(_NU))] + _CO[r.integers(len(_CO))] for _ in range(n))
    s = s or "ba"
    return s.capitalize() if cap else s


def surname(r: Rng, lang: str = "en") -> str:
    if is_cjk(lang):
        return str(r.choice(CJK_SURNAMES[lang]))
    return word(r, int(r.integers(2, 4)))


def given_name(r: Rng, lang: str = "en") -> str:
    if is_cjk(lang):
        g = CJK_GIVEN[lang]
        if lang == "ja":
            return str(r.choice(g))
        return "".join(r.choice(g, size=int(r.integers(1, 3))))
    return word(r, int(r.integers(1, 3)))


def full_name(r: Rng, lang: str = "en") -> str:
    if is_cjk(lang):
        return surname(r, lang) + ("" if lang != "ko" else "") + given_name(r, lang)
    return f"{given_name(r, lang)} {surname(r, lang)}"


def city(r: Rng, lang: str = "en") -> str:
    if is_cjk(lang):
        p = CJK_PLACE[lang]
        suf = {"zh": "市", "ja": "市", "ko": "시"}[lang]
        return "".join(r.choice(p, size=2)) + suf
    return word(r, int(r.integers(1, 3))) + str(r.choice(_CITY_SUFFIX))


def address(r: Rng, lang: str = "en") -> list[str]:
    """Two-line fictional postal address."""
    if is_cjk(lang):
        p = CJK_PLACE[lang]
        if lang == "zh":
            l1 = city(r, lang) + "".join(r.choice(p, size=2)) + "区" + "".join(r.choice(p, size=2)) + f"路{r.integers(1, 300)}号"
        elif lang == "ja":
            l1 = city(r, lang) + "".join(r.choice(p, size=2)) + f"町{r.integers(1, 9)}丁目{r.integers(1, 30)}番{r.integers(1, 20)}号"
        else:
            l1 = city(r, lang) + " " + "".join(r.choice(p, size=2)) + "구 " + "".join(r.choice(p, size=2)) + f"로 {r.integers(1, 300)}"
        return [l1, f"{r.integers(100, 999)}-{r.integers(1000, 9999)}"]
    st = str(r.choice(_STREET.get(lang, _STREET["en"])))
    num = int(r.integers(1, 250))
    nm = word(r, 2)
    if lang in ("en", "nl", "de"):
        l1 = f"{num} {nm} {st}" if lang == "en" else f"{nm}{st.lower() if lang == 'nl' else ' ' + st} {num}"
    else:
        l1 = f"{num} {st} {nm}" if lang == "fr" else f"{st} {nm} {num}"
    return [l1, f"{r.integers(10000, 99999)} {city(r, lang).upper() if r.random() < 0.5 else city(r, lang)}"]


def digits(r: Rng, n: int) -> str:
    return "".join(str(d) for d in r.integers(0, 10, size=n))


def alnum(r: Rng, n: int) -> str:
    al = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
    return "".join(al[i] for i in r.integers(0, len(al), size=n))


def letters(r: Rng, n: int) -> str:
    al = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return "".join(al[i] for i in r.integers(0, 26, size=n))


def date(r: Rng, fmt: str, y0: int = 1950, y1: int = 2035) -> str:
    y, m, d = int(r.integers(y0, y1)), int(r.integers(1, 13)), int(r.integers(1, 29))
    mon = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"][m - 1]
    return {
        "dmy.": f"{d:02d}.{m:02d}.{y}", "dmy/": f"{d:02d}/{m:02d}/{y}", "ymd-": f"{y}-{m:02d}-{d:02d}",
        "mdy/": f"{m:02d}/{d:02d}/{y}", "dMy": f"{d:02d} {mon} {y}", "ymd.": f"{y}.{m:02d}.{d:02d}",
        "cjk": f"{y}年{m}月{d}日", "ko": f"{y}. {m}. {d}.",
    }[fmt]


def money(r: Rng, lo: float = 1, hi: float = 2000, sep: str = ".") -> str:
    v = float(np.exp(r.uniform(np.log(lo), np.log(hi))))
    s = f"{v:,.2f}"
    if sep == ",":
        s = s.replace(",", "X").replace(".", ",").replace("X", ".")
    return s


def sentence(r: Rng, lang: str, nwords: int) -> str:
    if is_cjk(lang):
        return "".join(r.choice(CJK_TEXT[lang], size=nwords * 2)) + "。"
    ws = [word(r, int(r.integers(1, 4)), cap=False) for _ in range(nwords)]
    ws[0] = ws[0].capitalize()
    return " ".join(ws) + "."


# --- labels ---------------------------------------------------------------
_LANG_ORDER = ["en", "fr", "de", "es", "it", "nl", "pt", "zh", "ja", "ko"]
_LABELS_RAW = {
    "surname": "Surname|Nom|Name|Apellidos|Cognome|Naam|Apelido|姓|氏|성",
    "given": "Given names|Prénoms|Vornamen|Nombre|Nome|Voornamen|Nomes|名|名|이름",
    "name": "Name|Nom|Name|Nombre|Nome|Naam|Nome|姓名|氏名|성명",
    "dob": "Date of birth|Date de naissance|Geburtsdatum|Fecha de nacimiento|Data di nascita|Geboortedatum|Data de nascimento|出生日期|生年月日|생년월일",
    "sex": "Sex|Sexe|Geschlecht|Sexo|Sesso|Geslacht|Sexo|性别|性別|성별",
    "nationality": "Nationality|Nationalité|Staatsangehörigkeit|Nacionalidad|Cittadinanza|Nationaliteit|Nacionalidade|国籍|国籍|국적",
    "number": "Document No.|N° du document|Ausweisnummer|Nº documento|N. documento|Documentnummer|N.º documento|证件号码|番号|번호",
    "expiry": "Date of expiry|Date d'expiration|Gültig bis|Válido hasta|Scadenza|Vervaldatum|Válido até|有效期至|有効期限|만료일",
    "issue": "Date of issue|Date de délivrance|Ausgestellt am|Fecha de expedición|Data di rilascio|Afgiftedatum|Data de emissão|签发日期|交付日|발급일",
    "pob": "Place of birth|Lieu de naissance|Geburtsort|Lugar de nacimiento|Luogo di nascita|Geboorteplaats|Local de nascimento|出生地|本籍|출생지",
    "address": "Address|Adresse|Anschrift|Domicilio|Indirizzo|Adres|Morada|住址|住所|주소",
    "authority": "Authority|Autorité|Behörde|Autoridad|Autorità|Autoriteit|Autoridade|签发机关|交付機関|발급기관",
    "signature": "Signature|Signature|Unterschrift|Firma|Firma|Handtekening|Assinatura|签名|署名|서명",
    "height": "Height|Taille|Größe|Estatura|Statura|Lengte|Altura|身高|身長|키",
    "category": "Categories|Catégories|Klassen|Clases|Categorie|Categorieën|Categorias|准驾车型|種類|종류",
    "insured": "Insurance No.|N° d'assuré|Versichertennr.|Nº afiliación|N. assicurato|Verzekerdennr.|N.º utente|保险号|被保険者番号|보험번호",
    "member": "Member No.|N° de membre|Mitgliedsnr.|Nº socio|N. socio|Lidnummer|N.º sócio|会员号|会員番号|회원번호",
    "valid": "Valid until|Valable jusqu'au|Gültig bis|Válido hasta|Valida fino al|Geldig tot|Válido até|有效期|有効期限|유효기간",
    "permit_type": "Type of permit|Type de titre|Art des Titels|Tipo de permiso|Tipo di permesso|Soort verblijf|Tipo de título|许可类型|在留資格|체류자격",
    "remarks": "Remarks|Observations|Anmerkungen|Observaciones|Annotazioni|Opmerkingen|Observações|备注|備考|비고",
    "student_no": "Student No.|N° étudiant|Matrikelnr.|Nº estudiante|Matricola|Studentnr.|N.º estudante|学号|学籍番号|학번",
    "faculty": "Faculty|Faculté|Fakultät|Facultad|Facoltà|Faculteit|Faculdade|院系|学部|학과",
    "personal_no": "Personal No.|N° personnel|Pers.-Nr.|Nº personal|Codice fiscale|Persoonsnr.|N.º pessoal|公民身份号码|個人番号|주민등록번호",
    "date": "Date|Date|Datum|Fecha|Data|Datum|Data|日期|日付|날짜",
    "total": "Total|Total|Gesamt|Total|Totale|Totaal|Total|合计|合計|합계",
    "subtotal": "Subtotal|Sous-total|Zwischensumme|Subtotal|Subtotale|Subtotaal|Subtotal|小计|小計|소계",
    "tax": "VAT|TVA|MwSt.|IVA|IVA|BTW|IVA|税额|消費税|부가세",
    "description": "Description|Désignation|Beschreibung|Descripción|Descrizione|Omschrijving|Descrição|品名|品名|품목",
    "qty": "Qty|Qté|Menge|Cant.|Q.tà|Aantal|Qtd.|数量|数量|수량",
    "unit_price": "Unit price|Prix unitaire|Einzelpreis|Precio unit.|Prezzo unit.|Prijs|Preço unit.|单价|単価|단가",
    "amount": "Amount|Montant|Betrag|Importe|Importo|Bedrag|Montante|金额|金額|금액",
    "balance": "Balance|Solde|Saldo|Saldo|Saldo|Saldo|Saldo|余额|残高|잔액",
    "account": "Account No.|N° de compte|Kontonummer|Nº de cuenta|N. conto|Rekeningnr.|N.º conta|账号|口座番号|계좌번호",
    "customer": "Customer No.|N° client|Kundennr.|Nº cliente|Cod. cliente|Klantnr.|N.º cliente|客户编号|お客様番号|고객번호",
    "invoice_no": "Invoice No.|Facture n°|Rechnungsnr.|Factura nº|Fattura n.|Factuurnr.|Fatura n.º|发票号码|請求番号|청구번호",
    "page": "Page|Page|Seite|Página|Pagina|Pagina|Página|页|ページ|페이지",
    "period": "Period|Période|Zeitraum|Periodo|Periodo|Periode|Período|期间|期間|기간",
    "debit": "Debit|Débit|Soll|Cargo|Dare|Debet|Débito|支出|出金|출금",
    "credit": "Credit|Crédit|Haben|Abono|Avere|Credit|Crédito|收入|入金|입금",
    "due": "Due date|Échéance|Fällig am|Vencimiento|Scadenza|Vervaldatum|Vencimento|到期日|お支払期限|납부기한",
    "phone": "Phone|Tél.|Telefon|Teléfono|Telefono|Telefoon|Telefone|电话|電話|전화",
    "email": "E-mail|Courriel|E-Mail|Correo|E-mail|E-mail|E-mail|邮箱|メール|이메일",
    "yes": "Yes|Oui|Ja|Sí|Sì|Ja|Sim|是|はい|예",
    "no": "No|Non|Nein|No|No|Nee|Não|否|いいえ|아니오",
    "employee": "Employee|Salarié|Mitarbeiter|Empleado|Dipendente|Werknemer|Funcionário|员工|従業員|직원",
    "gross": "Gross pay|Salaire brut|Bruttolohn|Salario bruto|Lordo|Brutoloon|Salário bruto|应发工资|総支給額|지급총액",
    "net": "Net pay|Net à payer|Nettolohn|Líquido|Netto|Nettoloon|Líquido|实发工资|差引支給額|실지급액",
    "patient": "Patient|Patient|Patient|Paciente|Paziente|Patiënt|Paciente|患者|患者|환자",
    "diagnosis": "Diagnosis|Diagnostic|Diagnose|Diagnóstico|Diagnosi|Diagnose|Diagnóstico|诊断|診断|진단",
    "from": "From|De|Von|De|Da|Van|De|发件人|差出人|보내는 사람",
    "to": "To|À|An|Para|A|Aan|Para|收件人|お届け先|받는 사람",
    "weight": "Weight|Poids|Gewicht|Peso|Peso|Gewicht|Peso|重量|重量|중량",
    "reference": "Reference|Référence|Referenz|Referencia|Riferimento|Referentie|Referência|参考号|参照番号|참조번호",
    "meter": "Meter No.|N° compteur|Zählernr.|Nº contador|Matricola contatore|Meternr.|N.º contador|表号|メーター番号|계량기번호",
    "consumption": "Consumption|Consommation|Verbrauch|Consumo|Consumo|Verbruik|Consumo|用量|使用量|사용량",
    "flight": "Flight|Vol|Flug|Vuelo|Volo|Vlucht|Voo|航班|便名|편명",
    "seat": "Seat|Siège|Sitz|Asiento|Posto|Stoel|Lugar|座位|座席|좌석",
    "gate": "Gate|Porte|Flugsteig|Puerta|Uscita|Gate|Porta|登机口|搭乗口|탑승구",
    "class": "Class|Classe|Klasse|Clase|Classe|Klasse|Classe|舱位|クラス|등급",
    "pay_to": "Pay to the order of|Payez à l'ordre de|Zahlen Sie an|Páguese a|Pagate a|Betaal aan|Pague a|收款人|支払先|지급인",
}
LABELS: dict[str, dict[str, str]] = {k: dict(zip(_LANG_ORDER, v.split("|"))) for k, v in _LABELS_RAW.items()}


def label(key: str, lang: str) -> str:
    return LABELS[key].get(lang) or LABELS[key]["en"]


# Titles per family: per language a few variants; fictional states are generated separately.
_TITLES_RAW = {
    "id_card_front": "IDENTITY CARD;NATIONAL ID CARD|CARTE NATIONALE D'IDENTITÉ;CARTE D'IDENTITÉ|PERSONALAUSWEIS;IDENTITÄTSKARTE|DOCUMENTO NACIONAL DE IDENTIDAD;CÉDULA DE IDENTIDAD|CARTA D'IDENTITÀ|IDENTITEITSKAART|CARTÃO DE CIDADÃO;BILHETE DE IDENTIDADE|居民身份证;国民身份证|身分証明書;個人番号カード|주민등록증",
    "id_card_back": "IDENTITY CARD;RESIDENT CARD|CARTE D'IDENTITÉ|PERSONALAUSWEIS|DOCUMENTO DE IDENTIDAD|CARTA D'IDENTITÀ|IDENTITEITSKAART|CARTÃO DE CIDADÃO|居民身份证|個人番号カード|주민등록증",
    "driver_licence": "DRIVING LICENCE;DRIVER LICENSE|PERMIS DE CONDUIRE|FÜHRERSCHEIN|PERMISO DE CONDUCCIÓN;LICENCIA DE CONDUCIR|PATENTE DI GUIDA|RIJBEWIJS|CARTA DE CONDUÇÃO|机动车驾驶证;驾驶执照|運転免許証|자동차운전면허증",
    "passport_page": "PASSPORT|PASSEPORT|REISEPASS|PASAPORTE|PASSAPORTO|PASPOORT|PASSAPORTE|护照|旅券|여권",
    "residence_permit": "RESIDENCE PERMIT;RESIDENT CARD|TITRE DE SÉJOUR|AUFENTHALTSTITEL|PERMISO DE RESIDENCIA|PERMESSO DI SOGGIORNO|VERBLIJFSVERGUNNING|TÍTULO DE RESIDÊNCIA|居留许可;外国人居留证|在留カード|외국인등록증",
    "health_insurance_card": "HEALTH INSURANCE CARD;HEALTH CARD|CARTE D'ASSURANCE MALADIE|GESUNDHEITSKARTE;VERSICHERTENKARTE|TARJETA SANITARIA|TESSERA SANITARIA|ZORGPAS|CARTÃO DE SAÚDE|医疗保险卡;社会保障卡|健康保険証;被保険者証|건강보험증",
    "membership_card": "MEMBER CARD;MEMBERSHIP|CARTE DE MEMBRE|MITGLIEDSAUSWEIS|TARJETA DE SOCIO|TESSERA SOCIO|LIDMAATSCHAPSKAART|CARTÃO DE SÓCIO|会员卡|会員証|회원카드",
    "student_card": "STUDENT ID;STUDENT CARD|CARTE ÉTUDIANT|STUDIERENDENAUSWEIS|CARNÉ DE ESTUDIANTE|TESSERA STUDENTE|STUDENTENKAART|CARTÃO DE ESTUDANTE|学生证|学生証|학생증",
    "bank_statement": "Account Statement;Statement of Account|Relevé de compte|Kontoauszug|Extracto de cuenta|Estratto conto|Rekeningafschrift|Extrato de conta|账户对账单|取引明細書|거래내역서",
    "invoice": "INVOICE;Tax Invoice|FACTURE|RECHNUNG|FACTURA|FATTURA|FACTUUR|FATURA|发票;增值税发票|請求書|세금계산서;청구서",
    "receipt": "RECEIPT;SALES RECEIPT|TICKET DE CAISSE;REÇU|KASSENBON;QUITTUNG|TICKET;RECIBO|SCONTRINO|KASSABON|RECIBO|收据;购物小票|領収書;レシート|영수증",
    "utility_bill": "Electricity Bill;Your Energy Bill;Water Bill|Facture d'électricité;Facture d'eau|Stromrechnung;Jahresabrechnung|Factura de luz;Factura de agua|Bolletta luce;Bolletta gas|Energierekening|Fatura de eletricidade|电费通知单;水费账单|電気料金のお知らせ;ガス料金明細|전기요금 청구서;수도요금 고지서",
    "application_form": "APPLICATION FORM;Registration Form|FORMULAIRE DE DEMANDE|ANTRAG;ANMELDEFORMULAR|SOLICITUD|MODULO DI DOMANDA|AANVRAAGFORMULIER|FORMULÁRIO DE PEDIDO|申请表;登记表|申請書;届出書|신청서;등록신청서",
    "letter": "|||||||||",
    "certificate": "CERTIFICATE;CERTIFICATE OF ACHIEVEMENT;DIPLOMA|CERTIFICAT;DIPLÔME|URKUNDE;ZEUGNIS;ZERTIFIKAT|CERTIFICADO;DIPLOMA|CERTIFICATO;DIPLOMA|CERTIFICAAT;DIPLOMA|CERTIFICADO|证书;毕业证书|証明書;修了証書|수료증;졸업증서",
    "boarding_pass": "BOARDING PASS|CARTE D'EMBARQUEMENT|BORDKARTE|TARJETA DE EMBARQUE|CARTA D'IMBARCO|INSTAPKAART|CARTÃO DE EMBARQUE|登机牌|搭乗券|탑승권",
    "ticket": "TICKET;ADMIT ONE;TRAIN TICKET|BILLET|FAHRKARTE;EINTRITTSKARTE|BILLETE;ENTRADA|BIGLIETTO|TICKET;KAARTJE|BILHETE|车票;入场券|乗車券;入場券|승차권;입장권",
    "payslip": "PAYSLIP;Earnings Statement|BULLETIN DE PAIE|LOHNABRECHNUNG;Verdienstabrechnung|NÓMINA|BUSTA PAGA|LOONSTROOK|RECIBO DE VENCIMENTO|工资单|給与明細書|급여명세서",
    "tax_form": "Income Tax Return;Tax Declaration|Déclaration des revenus|Einkommensteuererklärung|Declaración de la renta|Dichiarazione dei redditi|Aangifte inkomstenbelasting|Declaração de IRS|个人所得税申报表|確定申告書|종합소득세 신고서",
    "medical_report": "MEDICAL REPORT;Laboratory Report;Discharge Summary|COMPTE RENDU MÉDICAL|ARZTBRIEF;Befundbericht|INFORME MÉDICO|REFERTO MEDICO|MEDISCH VERSLAG|RELATÓRIO MÉDICO|诊断证明书;检验报告单|診断書;検査結果報告書|진단서;검사결과지",
    "delivery_note": "DELIVERY NOTE;Packing Slip|BON DE LIVRAISON|LIEFERSCHEIN|ALBARÁN|DOCUMENTO DI TRASPORTO|PAKBON|GUIA DE REMESSA|送货单|納品書|납품서",
    "contract_page": "AGREEMENT;SERVICE CONTRACT;LEASE AGREEMENT|CONTRAT;CONTRAT DE BAIL|VERTRAG;MIETVERTRAG|CONTRATO|CONTRATTO|OVEREENKOMST|CONTRATO|合同;租赁合同|契約書;賃貸借契約書|계약서;임대차계약서",
    "table_report": "Quarterly Report;Summary Report|Rapport trimestriel|Quartalsbericht|Informe trimestral|Relazione trimestrale|Kwartaalrapport|Relatório trimestral|季度报告|四半期報告書|분기 보고서",
    "shipping_label": "PRIORITY;EXPRESS;STANDARD|PRIORITAIRE;EXPRESS|PAKET;EXPRESS|URGENTE;EXPRESS|PRIORITARIA|PAKKET|EXPRESSO|快递;特快专递|宅急便;ゆうパック|택배;특급",
    "cheque": "||||||||",
    "vehicle_registration": "VEHICLE REGISTRATION;REGISTRATION CERTIFICATE|CERTIFICAT D'IMMATRICULATION|ZULASSUNGSBESCHEINIGUNG|PERMISO DE CIRCULACIÓN|CARTA DI CIRCOLAZIONE|KENTEKENBEWIJS|CERTIFICADO DE MATRÍCULA|机动车行驶证|自動車検査証|자동차등록증",
    "employee_badge": "STAFF;EMPLOYEE ID;VISITOR|PERSONNEL;VISITEUR|MITARBEITER;BESUCHER|EMPLEADO;VISITANTE|DIPENDENTE;VISITATORE|MEDEWERKER;BEZOEKER|FUNCIONÁRIO|员工证;工作证|社員証|사원증",
    "bank_card": "DEBIT;CREDIT|DÉBIT|DEBITKARTE|DÉBITO|DEBITO|DEBIT|DÉBITO|借记卡|キャッシュカード|체크카드",
    "business_card": "||||||||",
    "gift_voucher": "GIFT VOUCHER;GIFT CARD|BON CADEAU|GUTSCHEIN|VALE REGALO|BUONO REGALO|CADEAUBON|VALE DE OFERTA|礼品券|商品券|상품권",
}


def title(family: str, lang: str, r: Rng) -> str:
    raw = _TITLES_RAW.get(family, "")
    parts = raw.split("|")
    i = _LANG_ORDER.index(lang)
    opts = [o for o in (parts[i] if i < len(parts) else "").split(";") if o]
    if not opts:
        opts = [o for o in parts[0].split(";") if o] if parts and parts[0] else [word(r, 3).upper()]
    return str(r.choice(opts))


_STATE = {
    "en": ["REPUBLIC OF {}", "KINGDOM OF {}", "{}", "UNITED STATES OF {}", "FEDERATION OF {}"],
    "fr": ["RÉPUBLIQUE DE {}", "ROYAUME DE {}", "{}"],
    "de": ["REPUBLIK {}", "BUNDESREPUBLIK {}", "{}"],
    "es": ["REPÚBLICA DE {}", "REINO DE {}", "{}"],
    "it": ["REPUBBLICA DI {}", "{}"],
    "nl": ["KONINKRIJK {}", "REPUBLIEK {}"],
    "pt": ["REPÚBLICA DE {}", "{}"],
}


def state_name(r: Rng, lang: str) -> str:
    """Fictional issuing state name."""
    if is_cjk(lang):
        p = CJK_PLACE[lang]
        suf = {"zh": ["共和国", "国", "联邦"], "ja": ["国", "共和国", "王国"], "ko": ["공화국", "왕국", "국"]}[lang]
        return "".join(r.choice(p, size=2)) + str(r.choice(suf))
    return str(r.choice(_STATE[lang])).format(word(r, int(r.integers(2, 4))).upper())


def org_name(r: Rng, lang: str, kind: str = "company") -> str:
    if is_cjk(lang):
        p = CJK_PLACE[lang]
        suf = {
            "zh": {"company": "有限公司", "bank": "银行", "utility": "电力公司", "school": "大学", "clinic": "医院", "club": "俱乐部", "transport": "航空"},
            "ja": {"company": "株式会社", "bank": "銀行", "utility": "電力", "school": "大学", "clinic": "病院", "club": "クラブ", "transport": "航空"},
            "ko": {"company": "주식회사", "bank": "은행", "utility": "전력공사", "school": "대학교", "clinic": "병원", "club": "클럽", "transport": "항공"},
        }[lang][kind]
        return "".join(r.choice(p, size=2)) + suf
    w = word(r, int(r.integers(2, 4)))
    suf = {
        "company": ["Ltd", "GmbH", "S.A.", "Inc.", "& Co.", "Group", "AG", "SARL", "B.V."],
        "bank": ["Bank", "Savings Bank", "Credit Union", "Banque", "Sparkasse", "Banco"],
        "utility": ["Energy", "Power & Light", "Water Works", "Stadtwerke", "Énergie", "Utilities"],
        "school": ["University", "College", "Institute of Technology", "Universität", "Université", "Academy"],
        "clinic": ["Clinic", "Medical Centre", "Hospital", "Klinikum", "Laboratory"],
        "club": ["Club", "Fitness", "Library", "Association", "Verein", "Society"],
        "transport": ["Airways", "Air", "Rail", "Airlines", "Express", "Lines"],
    }[kind]
    return f"{w} {r.choice(suf)}"
