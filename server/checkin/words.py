"""The check-in page's words: Vietnamese (the default) and English, the same keys in both
(tests/server/checkin/test_page.py checks). Plain text: the template escapes what it shows."""

from __future__ import annotations

LANGUAGES = ("vi", "en")

VI: dict[str, str] = {
    "title": "Khai báo ra vào",
    "site": "Cơ sở",
    "consent.title": "Thông tin được lưu",
    "consent.what": (
        "Chúng tôi lưu họ tên, số điện thoại, số CCCD (nếu bạn nhập), câu trả lời khai báo y tế, "
        "địa điểm và thời gian."
    ),
    "consent.why": (
        "Để biết ai đang có mặt và để liên hệ với bạn khi cần truy vết; không dùng vào việc khác."
    ),
    "consent.how_long": "Thông tin được lưu như dữ liệu ra vào tại cổng: {retention}.",
    "consent.retention_days": "{days} ngày rồi tự động xoá",
    "consent.retention_site": "theo quy định lưu trữ của đơn vị",
    "consent.agree": "Khi gửi, bạn đồng ý với việc lưu thông tin này.",
    "field.name": "Họ và tên (như trên CCCD)",
    "field.phone": "Số điện thoại",
    "field.cccd": "Số CCCD (không bắt buộc)",
    "field.cccd_hint": "12 chữ số",
    "health.title": "Khai báo y tế (trong 14 ngày qua)",
    "health.symptoms": "Bạn có sốt, ho, khó thở, đau họng hoặc mất vị giác/khứu giác không?",
    "health.contact": "Bạn có tiếp xúc gần với người nhiễm hoặc nghi nhiễm COVID-19 không?",
    "health.travel": "Bạn có đến hoặc đi qua vùng đang có dịch không?",
    "questions.title": "Câu hỏi của cơ sở",
    "answer.no": "Không",
    "answer.yes": "Có",
    "button.in": "Vào (check-in)",
    "button.out": "Ra (check-out)",
    "name.missing": "Vui lòng nhập họ và tên.",
    "name.invalid": "Họ tên chỉ gồm chữ cái (có dấu), khoảng trắng và ' - . (tối đa 100 ký tự).",
    "phone.missing": "Vui lòng nhập số điện thoại.",
    "phone.invalid": "Số điện thoại không hợp lệ: 10 chữ số bắt đầu bằng 0, hoặc +84…",
    "cccd.invalid": "Số CCCD gồm đúng 12 chữ số.",
    "health.missing": "Vui lòng chọn Có hoặc Không.",
    "stamp.invalid": "Biểu mẫu không hợp lệ. Vui lòng gửi lại.",
    "stamp.expired": "Biểu mẫu đã hết hạn. Vui lòng gửi lại.",
    "errors": "Vui lòng sửa các mục được đánh dấu.",
    "recorded.title": "Đã ghi nhận",
    "recorded.in": "Bạn đã check-in",
    "recorded.out": "Bạn đã check-out",
    "recorded.at": "lúc {time}",
    "recorded.health": "Bạn đã trả lời “Có” ở phần khai báo y tế: vui lòng báo ngay cho nhân viên.",
    "recorded.again": "Khai báo cho người khác",
    "invalid.title": "Mã QR này không còn hiệu lực",
    "invalid.text": "Vui lòng quét mã QR mới tại địa điểm hoặc hỏi nhân viên.",
    "limit.title": "Quá nhiều lượt gửi",
    "limit.text": "Vui lòng thử lại sau {seconds} giây.",
    "full.title": "Địa điểm đã đủ lượt khai báo hôm nay",
    "full.text": "Vui lòng báo cho nhân viên tại địa điểm.",
    "keep.label": "Lưu mã cá nhân (mã QR để đưa ở cổng, {days} ngày)",
    "remember.label": "Ghi nhớ tôi trên điện thoại này ({days} ngày)",
    "remember.hint": (
        "Họ tên và số điện thoại được lưu (đã mã hoá) trong trình duyệt này, để lần sau chỉ cần "
        "một chạm. Bấm “Không phải tôi” để xoá."
    ),
    "hello": "Xin chào, {name}",
    "hello.phone": "Số điện thoại …{end}",
    "hello.health": "Khai báo y tế khi vào (không cần khi ra)",
    "not_me": "Không phải tôi",
    "kept.title": "Mã cá nhân của bạn",
    "kept.text": (
        "Nhấn giữ ảnh để lưu. Đưa mã này ở cổng để được ghi nhận nhanh; mã tự khai báo không "
        "mở cổng kiểm soát ra vào."
    ),
    "kept.until": "Hiệu lực đến {date}",
    "kept.alt": "Mã QR cá nhân",
    "kept.none": "Cơ sở này chưa cấp mã cá nhân.",
    "language": "English",
}

EN: dict[str, str] = {
    "title": "Check-in",
    "site": "Site",
    "consent.title": "What is kept",
    "consent.what": (
        "We keep your name, phone number, ID card number (if you give it), your health answers, "
        "the place and the time."
    ),
    "consent.why": (
        "To know who is present and to reach you if contact tracing needs it; for nothing else."
    ),
    "consent.how_long": "It is kept as the gates' entries are: {retention}.",
    "consent.retention_days": "deleted automatically after {days} days",
    "consent.retention_site": "as the site's retention rules say",
    "consent.agree": "By sending, you agree to this.",
    "field.name": "Full name (as on your ID card)",
    "field.phone": "Phone number",
    "field.cccd": "ID card (CCCD) number (optional)",
    "field.cccd_hint": "12 digits",
    "health.title": "Health declaration (past 14 days)",
    "health.symptoms": (
        "Have you had fever, cough, shortness of breath, sore throat or lost taste or smell?"
    ),
    "health.contact": "Have you been in close contact with someone who has or may have COVID-19?",
    "health.travel": "Have you been to or through an area with an outbreak?",
    "questions.title": "The site's questions",
    "answer.no": "No",
    "answer.yes": "Yes",
    "button.in": "Check in",
    "button.out": "Check out",
    "name.missing": "Please enter your full name.",
    "name.invalid": "A name holds letters (with accents), spaces and ' - . only (at most 100).",
    "phone.missing": "Please enter your phone number.",
    "phone.invalid": "Not a Vietnamese phone number: 10 digits starting with 0, or +84…",
    "cccd.invalid": "An ID card number is exactly 12 digits.",
    "health.missing": "Please answer Yes or No.",
    "stamp.invalid": "This form is not valid. Please send it again.",
    "stamp.expired": "This form has expired. Please send it again.",
    "errors": "Please correct the marked fields.",
    "recorded.title": "Recorded",
    "recorded.in": "You checked in",
    "recorded.out": "You checked out",
    "recorded.at": "at {time}",
    "recorded.health": "You answered “Yes” in the health declaration: please tell the staff now.",
    "recorded.again": "Check in someone else",
    "invalid.title": "This poster is not valid any more",
    "invalid.text": "Please scan the new QR code at the place, or ask the staff.",
    "limit.title": "Too many attempts",
    "limit.text": "Please try again in {seconds} seconds.",
    "full.title": "This place has reached today's check-in limit",
    "full.text": "Please tell the staff at the place.",
    "keep.label": "Save my personal code (a QR to show at gates, {days} days)",
    "remember.label": "Remember me on this phone ({days} days)",
    "remember.hint": (
        "Your name and phone number are kept (encrypted) in this browser, so that next time "
        "takes one tap. “Not me” deletes them."
    ),
    "hello": "Hello, {name}",
    "hello.phone": "Phone …{end}",
    "hello.health": "Health declaration when entering (not needed to leave)",
    "not_me": "Not me",
    "kept.title": "Your personal code",
    "kept.text": (
        "Press and hold the image to save it. Show it at a gate to be recorded quickly; a "
        "self-declared code does not open an access-controlled gate."
    ),
    "kept.until": "Valid until {date}",
    "kept.alt": "Personal QR code",
    "kept.none": "This site does not issue personal codes yet.",
    "language": "Tiếng Việt",
}

CATALOGUES = {"vi": VI, "en": EN}


def words(lang: str) -> dict[str, str]:
    return CATALOGUES.get(lang, VI)
