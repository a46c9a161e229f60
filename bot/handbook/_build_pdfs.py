"""Build the PDF documents of the sample Lumenfold Cartography handbook.

Run with the project's virtual environment (fpdf2 is a dev dependency):

    .venv/bin/python bot/handbook/_build_pdfs.py

It writes public/benefits-overview.pdf and finance/quarter-close-checklist.pdf
next to this script. Only the core Helvetica font is used, so every string must
be latin-1: no curly quotes, em-dashes or currency symbols other than plain text.
The creation date is fixed so that rebuilding gives the same document text.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from fpdf import FPDF

HERE = Path(__file__).resolve().parent
FIXED_DATE = dt.datetime(2025, 2, 3, 9, 0, 0, tzinfo=dt.timezone.utc)

# A document is a title plus a list of blocks:
#   ("h1", text) ("h2", text) ("h3", text) ("p", text) ("meta", text)
#   ("ul", [items]) ("table", [header, row, row, ...], [column widths in mm])

BENEFITS = {
    "path": HERE / "public" / "benefits-overview.pdf",
    "title": "Benefits Overview 2025 - Lumenfold Cartography",
    "subject": "Employee benefits: health, retirement, insurance, parental leave, learning and wellness",
    "blocks": [
        ("h1", "Benefits Overview 2025"),
        ("meta", "Owner: People and Workplace (Benefits). Applies to: regular employees in the United States and Canada "
                 "working 30 or more hours a week. Plan year: January 1 to December 31, 2025."),
        ("p", "This overview summarises the benefits Lumenfold Cartography provides. It is a guide; if anything here "
              "differs from the official plan documents in the People Hub, the plan documents apply."),
        ("h2", "When coverage starts and how to enrol"),
        ("p", "Medical, dental and vision coverage starts on your first day of employment. You must enrol in the People "
              "Hub within 30 days of your start date. If you do not enrol in time, you will have employee-only coverage "
              "on the Summit HSA 2000 plan and will not be able to change it until the next open enrolment, unless you "
              "have a qualifying life event."),
        ("p", "Qualifying life events include marriage, divorce, the birth or adoption of a child, and losing other "
              "coverage. Report the event in the People Hub within 30 days to change your elections."),
        ("p", "Open enrolment for the 2026 plan year runs from November 3 to November 17, 2025."),
        ("h2", "Medical plans (United States)"),
        ("p", "We offer two medical plans through Summit Health Alliance. Lumenfold pays 90 percent of the premium for employee-only coverage and 75 percent of the "
              "additional premium for a spouse, partner, or children."),
        ("table", [
            ["", "Summit PPO 500", "Summit HSA 2000"],
            ["Annual deductible (individual / family)", "500 / 1,000 USD", "2,000 / 4,000 USD"],
            ["Out-of-pocket maximum (individual / family)", "3,500 / 7,000 USD", "4,000 / 8,000 USD"],
            ["Primary care visit", "25 USD copay", "20% after deductible"],
            ["Employee cost per paycheck, employee only", "38 USD", "14 USD"],
            ["Company HSA contribution per year", "Not available", "1,000 USD individual, 2,000 USD family"],
        ], [78, 52, 52]),
        ("p", "The company HSA contribution is paid in equal amounts with each semi-monthly paycheck. You can add your own "
              "pre-tax contributions up to the IRS limit."),
        ("h2", "Dental and vision"),
        ("p", "Dental coverage is through Brightbite Dental and vision through ClearPath Vision. Lumenfold pays 100 percent "
              "of the premium for employees and 50 percent for dependents. Dental covers two cleanings a year in full "
              "and orthodontics for children up to a lifetime maximum of 2,000 USD. Vision covers one eye exam a year and "
              "a 200 USD allowance for frames or contact lenses every 12 months."),
        ("h2", "Canada (Halifax and remote Canadian employees)"),
        ("p", "Canadian employees are covered by our group plan through Maritime Mutual, which includes extended health, "
              "dental, vision, and prescription drugs on top of provincial health coverage. Lumenfold pays 100 percent of "
              "the premiums for employees and their families. A 500 CAD health spending account is credited each January."),
        ("h2", "Retirement savings"),
        ("h3", "401(k) plan (United States)"),
        ("ul", [
            "Lumenfold matches 100 percent of your contributions up to the first 4 percent of your base salary.",
            "The company match vests immediately: it is yours from the day it is paid in.",
            "New employees are enrolled automatically at 3 percent of salary. You can change or stop this at any time.",
            "Both traditional (pre-tax) and Roth contributions are available. The plan is administered by Keystone "
            "Retirement Services.",
        ]),
        ("h3", "Group RRSP (Canada)"),
        ("p", "Canadian employees can join the Group RRSP. Lumenfold matches contributions dollar for dollar up to 4 "
              "percent of base salary, paid into a deferred profit sharing plan that vests after 12 months of service."),
        ("h2", "Insurance"),
        ("ul", [
            "Life insurance: 2 times your base salary, up to 750,000 USD, paid by Lumenfold. You can buy extra cover for "
            "yourself and your family.",
            "Short-term disability: 70 percent of base salary for up to 26 weeks, after a 7-day waiting period, paid by "
            "Lumenfold.",
            "Long-term disability: 60 percent of base salary, up to 15,000 USD per month, after 26 weeks, paid by Lumenfold.",
        ]),
        ("h2", "Paid parental leave"),
        ("p", "Every new parent receives 14 weeks of parental leave at full base pay, whether the child joins the family "
              "by birth, adoption, or foster placement. You can take the leave in one block or in up to two blocks, "
              "within 12 months of the child's arrival. Birthing parents may also receive short-term disability for "
              "recovery before and after the birth, which is separate from and in addition to the 14 weeks. You are "
              "eligible from your first day; there is no minimum length of service."),
        ("p", "Tell your People Partner at least 8 weeks before you expect to start leave, when you can. They will help "
              "you plan the timing and explain how pay works during the leave."),
        ("h2", "Learning and growth"),
        ("p", "Each employee has a learning budget of 1,500 USD (or 2,000 CAD) per calendar year for courses, books, "
              "certifications, and conferences. Unused budget does not roll over. Conference travel is paid from the "
              "learning budget only for the ticket; travel and hotel follow the expenses and travel policy."),
        ("h2", "Wellbeing"),
        ("ul", [
            "Wellness allowance: 60 USD (or 80 CAD) per month for gym memberships, climbing gyms, ski passes, fitness "
            "classes, or meditation apps. Claim it in Spendwise; unused amounts do not carry forward.",
            "Employee Assistance Program: Harborline EAP offers up to 8 free counselling sessions per issue per year for "
            "you and anyone in your household, plus legal and financial advice. Call 1-800-555-0199, 24 hours a day. "
            "Lumenfold never learns who uses the EAP.",
        ]),
        ("h2", "Questions"),
        ("p", "Email benefits@lumenfold.example or post in #ask-people. For a specific claim, contact the insurer first."),
    ],
}

QUARTER_CLOSE = {
    "path": HERE / "finance" / "quarter-close-checklist.pdf",
    "title": "Quarter-Close Checklist FY2026 - Lumenfold Finance",
    "subject": "Finance team checklist and calendar for closing each fiscal quarter",
    "blocks": [
        ("h1", "Quarter-Close Checklist, FY2026"),
        ("meta", "Owner: Esther Vaillancourt, Controller. Audience: Finance team. Internal to Finance. "
                 "Version 5, updated January 27, 2025."),
        ("p", "This checklist is the Finance team's playbook for closing each fiscal quarter. Our fiscal year runs from "
              "February 1 to January 31, so FY2026 quarters end on April 30, 2025, July 31, 2025, October 31, 2025 and "
              "January 31, 2026. The target is to close Q1 to Q3 by business day 8 (BD+8) after quarter end. Year-end "
              "close (Q4) has a target of BD+12 because of the audit."),
        ("p", "Every task has one owner. If you cannot finish a task on its day, post in #finance-close before 16:00 "
              "Mountain Time so the Controller can re-plan. Tick each task off in the close tracker, not in this document."),
        ("h2", "Before quarter end (BD-5 to BD0)"),
        ("ul", [
            "BD-5: Send the accrual request to all budget owners, asking for any goods or services received but not yet "
            "invoiced above 5,000 USD. Owner: Senior Accountant (Marisol Dunleavy).",
            "BD-3: Confirm the billing service deploy freeze with Platform Engineering. Owner: Revenue Accountant.",
            "BD-2: Remind sales leaders that customer contracts must be fully signed in the CRM by 23:59 Mountain Time on "
            "the last day of the quarter to count in the quarter. Owner: Revenue Accountant.",
            "BD0: Run final payroll reports for both entities and lock the quarter's expense reports in Spendwise. "
            "Owner: Payroll and AP Specialist (Owen Castellanos).",
        ]),
        ("h2", "Close tasks after quarter end"),
        ("table", [
            ["Day", "Task", "Owner"],
            ["BD+1", "Bank reconciliations for all US and Canadian accounts", "AP Specialist"],
            ["BD+1", "Cut off AP: invoices dated in the quarter and received by BD+1 are booked in it", "AP Specialist"],
            ["BD+2", "Revenue: subscription schedules, deferred revenue roll-forward, usage billing for Contour", "Revenue Accountant"],
            ["BD+2", "Record accruals from budget owner responses and open purchase orders", "Senior Accountant"],
            ["BD+3", "Payroll, bonus, and on-call stipend accruals; PTO liability true-up", "Senior Accountant"],
            ["BD+3", "Capitalised software: engineering time from the quarterly survey", "Senior Accountant"],
            ["BD+4", "Flash results to the CFO: revenue, gross margin, operating expenses, cash", "Controller"],
            ["BD+4", "Intercompany: service fee to Lumenfold Cartography Canada ULC, FX revaluation", "Senior Accountant"],
            ["BD+5", "Prepaids, fixed assets and depreciation; deferred commission amortisation", "AP Specialist"],
            ["BD+6", "Flux analysis and review of the balance sheet reconciliations", "Controller"],
            ["BD+7", "Draft management reporting pack and department budget-versus-actual reports", "FP&A Manager"],
            ["BD+8", "CFO review and sign-off; close the period in the ledger", "CFO"],
        ], [16, 122, 44]),
        ("h2", "Rules and thresholds"),
        ("h3", "Accruals"),
        ("p", "Accrue any single item of 5,000 USD or more. Smaller items are expensed when the invoice arrives, unless "
              "several from the same supplier add up to more than 5,000 USD in the quarter."),
        ("h3", "Foreign exchange"),
        ("p", "Canadian dollar balances are translated at the closing rate published by our bank, Front Range Commerce "
              "Bank, on the last business day of the quarter. Income statement items use the monthly average rate from "
              "the same source."),
        ("h3", "Flux analysis"),
        ("p", "Explain every income statement line that moved by more than 10 percent AND more than 20,000 USD compared "
              "with the previous quarter, and every balance sheet line that moved by more than 50,000 USD. Explanations "
              "must say what drove the change, not just repeat the numbers."),
        ("h3", "Reconciliations"),
        ("p", "Every balance sheet account has a named preparer and a reviewer, and no one reviews their own "
              "reconciliation. Unreconciled differences above 1,000 USD must be resolved before sign-off, not carried "
              "forward."),
        ("h2", "Q1 FY2026 close calendar"),
        ("table", [
            ["Milestone", "Date"],
            ["Quarter end", "Wednesday, April 30, 2025"],
            ["Accrual requests sent (BD-5)", "Wednesday, April 23, 2025"],
            ["Flash results to the CFO (BD+4)", "Tuesday, May 6, 2025"],
            ["Close complete and signed off (BD+8)", "Monday, May 12, 2025"],
            ["Audit committee preview", "Thursday, May 22, 2025"],
            ["Board meeting with quarterly results", "Tuesday, June 10, 2025"],
        ], [100, 82]),
        ("h2", "Sign-off"),
        ("p", "The Controller confirms that every task in the tracker is complete and every reconciliation reviewed, then "
              "the CFO reviews the reporting pack and signs off. Only the Controller can close a period in the ledger, "
              "and reopening a closed period needs written approval from the CFO with a reason recorded in the tracker."),
        ("h2", "After the close"),
        ("p", "Within 5 business days of sign-off, the Controller runs a 30-minute retrospective with the Finance team. "
              "Anything that slowed us down becomes an improvement task with an owner before the next quarter begins."),
    ],
}


class HandbookPDF(FPDF):
    def __init__(self, doc_title: str) -> None:
        super().__init__(format="Letter")
        self.doc_title = doc_title
        self.set_margins(17, 18, 17)
        self.set_auto_page_break(auto=True, margin=18)

    def footer(self) -> None:
        self.set_y(-13)
        self.set_font("helvetica", "I", 8)
        self.set_text_color(110, 110, 110)
        self.cell(0, 6, f"Lumenfold Cartography - {self.doc_title} - page {self.page_no()}", align="C")
        self.set_text_color(0, 0, 0)


def _check_latin1(text: str) -> str:
    text.encode("latin-1")  # raises if a character is outside the core-font range
    return text


def build(doc: dict) -> Path:
    pdf = HandbookPDF(doc["title"].split(" - ")[0])
    pdf.set_title(_check_latin1(doc["title"]))
    pdf.set_author("Lumenfold Cartography, Inc.")
    pdf.set_subject(_check_latin1(doc["subject"]))
    pdf.set_creator("bot/handbook/_build_pdfs.py")
    pdf.set_creation_date(FIXED_DATE)
    pdf.add_page()
    width = pdf.epw

    for block in doc["blocks"]:
        kind = block[0]
        if kind == "h1":
            pdf.set_font("helvetica", "B", 18)
            pdf.multi_cell(width, 9, _check_latin1(block[1]), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        elif kind == "h2":
            pdf.ln(3)
            pdf.set_font("helvetica", "B", 13)
            pdf.cell(width, 8, _check_latin1(block[1]), new_x="LMARGIN", new_y="NEXT")
        elif kind == "h3":
            pdf.ln(1)
            pdf.set_font("helvetica", "B", 11)
            pdf.cell(width, 7, _check_latin1(block[1]), new_x="LMARGIN", new_y="NEXT")
        elif kind == "meta":
            pdf.set_font("helvetica", "I", 9)
            pdf.multi_cell(width, 5, _check_latin1(block[1]), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        elif kind == "p":
            pdf.set_font("helvetica", "", 10.5)
            pdf.multi_cell(width, 5.5, _check_latin1(block[1]), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        elif kind == "ul":
            pdf.set_font("helvetica", "", 10.5)
            for item in block[1]:
                pdf.set_x(pdf.l_margin + 3)
                pdf.cell(5, 5.5, "-")
                pdf.multi_cell(width - 8, 5.5, _check_latin1(item), new_x="LMARGIN", new_y="NEXT")
                pdf.ln(0.8)
            pdf.ln(1.5)
        elif kind == "table":
            rows, widths = block[1], block[2]
            pdf.set_font("helvetica", "", 9.5)
            with pdf.table(col_widths=widths, width=min(sum(widths), pdf.epw), text_align="LEFT",
                           line_height=5.2, first_row_as_headings=True) as table:
                for row in rows:
                    cells = table.row()
                    for value in row:
                        cells.cell(_check_latin1(value))
            pdf.ln(3)
        else:
            raise ValueError(f"unknown block kind {kind!r}")

    doc["path"].parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(doc["path"]))
    return doc["path"]


def main() -> None:
    for doc in (BENEFITS, QUARTER_CLOSE):
        path = build(doc)
        print(f"wrote {path.relative_to(HERE)}")


if __name__ == "__main__":
    main()
