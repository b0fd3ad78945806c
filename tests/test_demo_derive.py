"""Demo conversations, judged preferences and prompts derived from documentation pages."""

from pipelines.demo import derive

DOCS = [
    {"url": "http://127.0.0.1:1/json.html", "text": "json - JSON encoder and decoder. " * 8},
    {"url": "http://127.0.0.1:1/csv.html", "text": "csv - CSV file reading and writing. " * 8},
    {
        "url": "http://127.0.0.1:1/os.path.html",
        "text": "os.path - common pathname manipulations. " * 6,
    },
    {"url": "http://127.0.0.1:1/index.html", "text": "Index of Modules"},
    {
        "url": "http://127.0.0.1:1/zipapp.html",
        "text": "Initialize self.  See help(type(self)). " * 9,
    },
    {"url": "http://127.0.0.1:1/json.html", "text": "a duplicate page of json " * 10},
]


def test_module_name_from_url():
    assert derive.module_name("http://h:1/os.path.html") == "os.path"
    assert derive.module_name("http://h:1/topics?key=X") is None


def test_qa_items_one_per_module_with_enough_text():
    items = derive.qa_items(DOCS)
    assert [it["module"] for it in items] == ["csv", "json", "os.path"]
    assert items[1]["prompt"] == "What is the Python module json for?"
    assert items[1]["answer"].startswith("json - JSON encoder")
    assert len(items[1]["answer"].split()) <= 40


def test_judge_prefers_the_asked_modules_docs():
    reference = "csv - CSV file reading and writing."
    assert derive.overlap_score(reference, reference) == 1.0
    assert derive.overlap_score("json encoder", reference) == 0.0
    rows = derive.preference_rows(derive.qa_items(DOCS))
    assert len(rows) == 3
    for row, item in zip(rows, derive.qa_items(DOCS), strict=True):
        assert row["responses"][0] == item["answer"]  # its own docs ranked first
        assert len(row["responses"]) == len(set(row["responses"])) >= 2
        assert "stands in for human raters" in row["rater"]
    # the same judgement as a reward rule of a prompt row's reference answer
    assert derive.rater_score("q", reference, answer=reference) == 1.0
    assert derive.rater_score("q", "json encoder", answer=reference) == 0.0


def test_split_and_rows_cover_every_item_once():
    items = derive.qa_items(DOCS)
    train, held = derive.split_items(items, seed=3)
    assert len(held) == 1 and len(train) == 2
    assert {it["module"] for it in train + held} == {"csv", "json", "os.path"}
    assert derive.sft_rows(train)[0].keys() == {"prompt", "response"}
    assert derive.prompt_rows(held)[0]["prompt"].startswith("What is the Python module")
