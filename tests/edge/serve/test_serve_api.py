"""The JSON API over real HTTPS on 127.0.0.1: a real `medkiosk serve` subprocess with the shipped
chest bundles, real X-rays from ../shared/data, the real case log. Every refusal is a clear HTTP
error and leaves nothing saved.
"""

import json
import os
import re
import struct
import time

import cv2
import numpy as np
import pytest

from tests.edge.serve.serve_helpers import (
    MODELS,
    NIH,
    PEDIATRIC,
    bearer,
    classify,
    medkiosk,
    read,
    real_xray,
    server_fixture,
)

pytest.importorskip("flask", reason="pip install 'medkiosk[serve]'")
pytest.importorskip("cheroot", reason="pip install 'medkiosk[serve]'")
pytestmark = pytest.mark.skipif(not os.path.isdir(PEDIATRIC),
                                reason="../shared/data is not beside the checkout")


server = server_fixture("serve")


@pytest.fixture(scope="module")
def token(server):
    return server.token()


def expect_error(result, status, code):
    got_status, _headers, body = result
    assert got_status == status, body
    assert body["error"]["code"] == code, body
    assert "Fix:" in body["error"]["message"]
    return body


def test_every_api_request_needs_a_token(server):
    nothing_before = server.cases_on_disk()
    for path in ("/api/v1/health", "/api/v1/ready", "/api/v1/modules", "/api/v1/cases", "/api/v1/session"):
        expect_error(server.request("GET", path), 401, "missing_token")
    expect_error(classify(server, None, read(real_xray())), 401, "missing_token")
    expect_error(classify(server, "not-a-token", read(real_xray())), 401, "wrong_token")
    expect_error(server.request("GET", "/api/v1/health", headers=bearer("x" * 43)), 401, "wrong_token")
    assert server.cases_on_disk() == nothing_before


def test_an_expired_token_is_refused(server):
    token = server.token("soon expired")
    assert server.request("GET", "/api/v1/health", headers=bearer(token))[0] == 200
    # Time passes: the store on disk says this token expired a second ago.
    path = os.path.join(server.state_dir, "serve", "tokens.json")
    with open(path) as handle:
        tokens = json.load(handle)
    for record in tokens.values():
        if record["device"] == "soon expired":
            record["expires"] = int(time.time()) - 1
    with open(path, "w") as handle:
        json.dump(tokens, handle)
    before = server.cases_on_disk()
    expect_error(server.request("GET", "/api/v1/health", headers=bearer(token)), 401, "expired_token")
    expect_error(classify(server, token, read(real_xray())), 401, "expired_token")
    assert server.cases_on_disk() == before


def test_pairing_code_is_single_use_and_limited_to_five_tries(server):
    from tests.edge.serve.serve_helpers import pairing_code

    pair = lambda code: server.request("POST", "/api/v1/pair", json.dumps({"code": code}),  # noqa: E731
                                       {"Content-Type": "application/json"})
    code = pairing_code(server.config)
    wrong = "000000" if code != "000000" else "111111"
    for tries_left in (4, 3, 2, 1):
        body = expect_error(pair(wrong), 401, "wrong_pairing_code")
        assert "{} tries left".format(tries_left) in body["error"]["message"]
    expect_error(pair(wrong), 401, "wrong_pairing_code")
    expect_error(pair(code), 401, "no_pairing_code")  # voided after five wrong tries
    code = pairing_code(server.config)
    assert pair(code)[0] == 200
    expect_error(pair(code), 401, "no_pairing_code")  # used


def test_an_expired_pairing_code_is_refused(server):
    from tests.edge.serve.serve_helpers import pairing_code

    code = pairing_code(server.config)
    path = os.path.join(server.state_dir, "serve", "pairing.json")
    with open(path) as handle:
        pairing = json.load(handle)
    pairing["expires"] = int(time.time()) - 1
    with open(path, "w") as handle:
        json.dump(pairing, handle)
    expect_error(server.request("POST", "/api/v1/pair", json.dumps({"code": code}),
                                {"Content-Type": "application/json"}), 401, "pairing_code_expired")


def test_a_real_xray_gives_the_same_result_as_medkiosk_classify(server, token):
    image = real_xray("PNEUMONIA", 3)
    status, _headers, body = classify(server, token, read(image), module="pediatric-pneumonia")
    assert status == 200, body
    cli = medkiosk("classify", image, "--bundle", os.path.join(MODELS, "pediatric-pneumonia"), "--json")
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)["images"][0]
    assert body["prediction"]["probabilities"] == expected["probabilities"]
    assert body["prediction"]["top3"] == expected["top3"]
    assert body["prediction"]["quality"] == expected["quality"]
    view = body["view"]
    assert view["disclaimer"] == "Decision support only - not a diagnosis"
    assert [row["name"] for row in view["rows"]] == [item["name"] for item in expected["top3"]]


def test_auto_suggests_a_module_the_image_fits(server, token):
    adult = os.path.join(NIH, "images", sorted(os.listdir(os.path.join(NIH, "images")))[0])
    status, _headers, body = classify(server, token, read(adult))
    assert status == 200, body
    assert body["suggested"] is True
    assert body["module"] in ("chest", "pediatric-pneumonia")
    assert body["view"]["state"] != "out_of_scope" or body["module"] == "chest"


def test_save_list_fetch_a_case(server, token):
    status, _headers, result = classify(server, token, read(real_xray("NORMAL", 0)),
                                        module="pediatric-pneumonia", filename="Patient-Jane-Doe.png")
    assert status == 200, result
    before = server.cases_on_disk()
    status, _headers, case = server.request("POST", "/api/v1/cases", json.dumps(
        {"result_id": result["result_id"]}), bearer(token, **{"Content-Type": "application/json"}))
    assert status == 201, case
    assert len(server.cases_on_disk()) == len(before) + 1
    assert case["top1"] == result["prediction"]["top1"]
    status, _headers, listing = server.request("GET", "/api/v1/cases", headers=bearer(token))
    assert status == 200 and case["id"] in [c["id"] for c in listing["cases"]]
    status, _headers, fetched = server.request("GET", "/api/v1/cases/" + case["id"], headers=bearer(token))
    assert status == 200
    assert fetched["result"]["probabilities"] == result["prediction"]["probabilities"]
    assert fetched["result"]["source"] == "serve" and "image" not in fetched
    status, headers, png = server.request("GET", "/api/v1/cases/{}/image".format(case["id"]),
                                          headers=bearer(token))
    assert status == 200 and headers["Content-Type"] == "image/png" and png.startswith(b"\x89PNG")
    check_referral_sheet(server, token, case, result)
    # A result is saved once, and only by the device that asked for it.
    expect_error(server.request("POST", "/api/v1/cases", json.dumps({"result_id": result["result_id"]}),
                                bearer(token, **{"Content-Type": "application/json"})), 404, "unknown_result")
    _status, _headers, other = classify(server, token, read(real_xray("NORMAL", 1)))
    stranger = server.token("another phone")
    expect_error(server.request("POST", "/api/v1/cases", json.dumps({"result_id": other["result_id"]}),
                                bearer(stranger, **{"Content-Type": "application/json"})),
                 404, "unknown_result")
    expect_error(server.request("GET", "/api/v1/cases/20260101T000000-0000000000", headers=bearer(token)),
                 404, "unknown_case")
    assert len(server.cases_on_disk()) == len(before) + 1
    # No patient data in the log: no uploaded file name, no case id.
    log = server.log()
    assert "Jane" not in log and case["id"] not in log
    assert "GET /api/v1/cases/<case_id> 200" in log


def check_referral_sheet(server, token, case, result):
    """The referral PDF: its text read back with pdftotext, its page rendered with pdftoppm."""
    import shutil
    import subprocess

    status, headers, pdf = server.request("GET", "/api/v1/cases/{}/referral.pdf".format(case["id"]),
                                          headers=bearer(token))
    assert status == 200 and headers["Content-Type"] == "application/pdf" and pdf.startswith(b"%PDF")
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext not installed (apt-get install poppler-utils)")
    path = os.path.join(server.folder, "referral.pdf")
    with open(path, "wb") as handle:
        handle.write(pdf)
    text = subprocess.check_output(["pdftotext", "-layout", path, "-"]).decode("utf-8")
    assert case["id"] in text and case["created_utc"] in text
    assert re.search(r"Case number:\s+{}\n".format(case["number"]), text)  # the short number, K-0042
    assert "Decision support only - not a diagnosis" in text
    assert result["prediction"]["bundle_id"] in text and "Patient reference" in text
    assert "What the model analysed (224x224)" in text
    for row in result["view"]["rows"]:
        line = r"{}\.\s+{}\s+{}".format(row["rank"], re.escape(row["name"]), re.escape(row["percent"]))
        assert re.search(line, text), text
    subprocess.check_call(["pdftoppm", "-png", "-r", "50", "-singlefile", path, path[:-4]])
    assert os.path.getsize(path[:-4] + ".png") > 1000


def test_oversized_upload_is_413_and_nothing_saved(server, token):
    before = server.cases_on_disk()
    big = read(real_xray()) + b"\0" * (2 * 1024 * 1024 + 1)
    expect_error(classify(server, token, big), 413, "too_large")
    assert server.cases_on_disk() == before


def png_header(width, height):
    """The first bytes of a PNG whose header claims ``width`` x ``height`` (no pixel data follows)."""
    header = struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", width, height)
    return b"\x89PNG\r\n\x1a\n" + header + b"\0" * 64


def test_pixel_bomb_is_refused_before_decoding(server, token):
    before = server.cases_on_disk()
    # The header claims 2001x2000 pixels, one past the 4 000 000 limit of this server's config.
    bomb = png_header(2001, 2000)
    body = expect_error(classify(server, token, bomb), 413, "too_many_pixels")
    assert "2001x2000" in body["error"]["message"]
    at_limit = png_header(2000, 2000)
    expect_error(classify(server, token, at_limit), 400, "bad_image")  # passes the limit, then not decodable
    assert server.cases_on_disk() == before


def test_damaged_dicom_text_and_truncated_uploads_are_refused(server, token):
    before = server.cases_on_disk()
    dicom = b"\0" * 128 + b"DICM" + b"\0" * 64
    body = expect_error(classify(server, token, dicom, filename="x.dcm"), 400, "bad_image")
    assert "DICOM" in body["error"]["message"]
    assert server.cases_on_disk() == before
    expect_error(classify(server, token, b"hello, not an image"), 415, "unsupported_format")
    data = read(real_xray())
    expect_error(classify(server, token, data[:len(data) // 2]), 400, "bad_image")
    expect_error(classify(server, token, b""), 400, "missing_image")
    expect_error(classify(server, token, data, module="skin"), 404, "unknown_module")


def test_cookie_requests_need_the_csrf_token_and_same_origin(server):
    paired = server.pair("browser")
    cookie = paired["cookie"].split(";")[0]
    assert "HttpOnly" in paired["cookie"] and "SameSite=Strict" in paired["cookie"]
    assert "Secure" in paired["cookie"]
    status, _headers, body = classify(server, None, read(real_xray()), extra_headers={"Cookie": cookie})
    assert status == 403 and body["error"]["code"] == "csrf"
    csrf = {"Cookie": cookie, "X-CSRF-Token": paired["csrf_token"]}
    evil = dict(csrf, Origin="https://evil.example")
    assert classify(server, None, read(real_xray()), extra_headers=evil)[2]["error"]["code"] == "cross_origin"
    status, _headers, body = classify(server, None, read(real_xray()), extra_headers=csrf)
    assert status == 200, body
    assert server.request("GET", "/api/v1/session", headers={"Cookie": cookie})[0] == 200


def test_health_ready_modules_and_security_headers(server, token):
    status, headers, body = server.request("GET", "/api/v1/health", headers=bearer(token))
    assert status == 200 and body["status"] == "ok"
    assert headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert headers["Cache-Control"] == "no-store"
    status, _headers, body = server.request("GET", "/api/v1/ready", headers=bearer(token))
    assert status == 200 and body["ready"] and body["modules_loaded"] == ["chest", "pediatric-pneumonia"]
    _status, _headers, body = server.request("GET", "/api/v1/modules", headers=bearer(token))
    assert [m["id"] for m in body["modules"]] == ["chest", "pediatric-pneumonia"]


def test_the_page_is_served_without_outside_assets(server):
    status, headers, page = server.request("GET", "/")
    assert status == 200
    text = page.decode("utf-8")
    assert "http://" not in text and "https://" not in text
    assert "Decision support only - not a diagnosis" in text
    for asset in ("/static/app.js", "/static/app.css"):
        assert server.request("GET", asset)[0] == 200


def test_tls_certificate_is_the_one_pair_prints(server):
    result = medkiosk("serve", "pair", "--config", server.config)
    assert server.peer_fingerprint() in result.stdout


def test_listens_only_on_the_configured_address(server):
    import socket

    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", server.port), timeout=5).close()
    socket.create_connection(("127.0.0.1", server.port), timeout=5).close()


def test_a_dicom_upload_gives_the_same_result_as_the_same_picture_as_png(server, token, tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    image = real_xray("NORMAL", 2)
    grey = cv2.imread(image, cv2.IMREAD_GRAYSCALE)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.Modality = "DOE^JANE", "CR"
    ds.Rows, ds.Columns = grey.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (grey.astype(np.uint16) << 4).tobytes()  # 12-bit detector data
    path = str(tmp_path / "x.dcm")
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
    status, _headers, as_png = classify(server, token, read(image), module="pediatric-pneumonia")
    assert status == 200, as_png
    status, _headers, as_dicom = classify(server, token, read(path), module="pediatric-pneumonia",
                                          filename="x.dcm")
    assert status == 200, as_dicom
    png_p, dicom_p = as_png["prediction"]["probabilities"], as_dicom["prediction"]["probabilities"]
    assert sorted(png_p) == sorted(dicom_p)
    assert max(abs(png_p[name] - dicom_p[name]) for name in png_p) <= 0.02
    assert "DOE" not in json.dumps(as_dicom)
