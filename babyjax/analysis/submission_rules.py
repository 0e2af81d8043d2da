"""What a BabyLM 2025 submission must hold, by the organisers' collation rules (github.com/babylm/
evaluation-pipeline-2025, `evaluation_pipeline/collate_preds.py`): the revisions each track scores fast, where each
task's predictions lie in a results tree, and how many predictions each of its subtasks must have. Read by
analysis/submission.py."""

from __future__ import annotations

import dataclasses

from babyjax.checkpoints.schedules import words_mark_name, words_marks

TRACKS = ("strict-small", "strict", "interaction")  # the text tracks; multimodal is not babyjax's
BACKENDS = ("causal", "mlm", "mntp")


def required_revisions(track: str) -> list[str]:
    """The revisions scored on the fast sets (and in the AoA task): every 1M words to 10M, every 10M to 100M, then
    (except strict-small) every 100M to 1B."""
    return [words_mark_name(m) for m in words_marks(100_000_000 if track == "strict-small" else 1_000_000_000)]


BLIMP = {
    "superlative_quantifiers_2": 986,
    "superlative_quantifiers_1": 979,
    "anaphor_gender_agreement": 971,
    "principle_a_reconstruction": 967,
    "irregular_past_participle_adjectives": 961,
    "sentential_subject_island": 961,
    "wh_island": 960,
    "left_branch_island_simple_question": 951,
    "coordinate_structure_constraint_object_extraction": 949,
    "tough_vs_raising_1": 948,
    "left_branch_island_echo_question": 947,
    "principle_a_c_command": 946,
    "regular_plural_subject_verb_agreement_2": 945,
    "irregular_past_participle_verbs": 942,
    "determiner_noun_agreement_with_adj_2": 941,
    "principle_a_domain_3": 941,
    "determiner_noun_agreement_with_adjective_1": 933,
    "anaphor_number_agreement": 931,
    "determiner_noun_agreement_2": 931,
    "existential_there_quantifiers_1": 930,
    "determiner_noun_agreement_1": 929,
    "matrix_question_npi_licensor_present": 929,
    "adjunct_island": 928,
    "existential_there_subject_raising": 924,
    "animate_subject_trans": 923,
    "drop_argument": 920,
    "tough_vs_raising_2": 920,
    "wh_vs_that_with_gap": 919,
    "sentential_negation_npi_licensor_present": 919,
    "principle_a_case_2": 915,
    "principle_a_domain_2": 915,
    "principle_a_domain_1": 914,
    "npi_present_2": 914,
    "principle_a_case_1": 912,
    "existential_there_quantifiers_2": 911,
    "wh_vs_that_with_gap_long_distance": 910,
    "npi_present_1": 909,
    "coordinate_structure_constraint_complex_left_branch": 906,
    "passive_2": 903,
    "wh_questions_subject_gap": 898,
    "animate_subject_passive": 895,
    "irregular_plural_subject_verb_agreement_2": 892,
    "regular_plural_subject_verb_agreement_1": 890,
    "only_npi_licensor_present": 882,
    "wh_vs_that_no_gap_long_distance": 875,
    "distractor_agreement_relative_clause": 871,
    "sentential_negation_npi_scope": 871,
    "intransitive": 868,
    "transitive": 868,
    "wh_vs_that_no_gap": 861,
    "wh_questions_object_gap": 859,
    "wh_questions_subject_gap_long_distance": 857,
    "inchoative": 855,
    "complex_np_island": 846,
    "passive_1": 840,
    "determiner_noun_agreement_with_adj_irregular_2": 840,
    "only_npi_scope": 837,
    "ellipsis_n_bar_2": 828,
    "determiner_noun_agreement_irregular_2": 820,
    "causative": 818,
    "existential_there_object_raising": 812,
    "irregular_plural_subject_verb_agreement_1": 804,
    "ellipsis_n_bar_1": 802,
    "distractor_agreement_relational_noun": 788,
    "expletive_it_object_raising": 759,
    "determiner_noun_agreement_with_adj_irregular_1": 718,
    "determiner_noun_agreement_irregular_1": 681,
}
SUPPLEMENT = {
    "hypernym": 842,
    "qa_congruence_easy": 64,
    "qa_congruence_tricky": 165,
    "subject_aux_inversion": 3867,
    "turn_taking": 280,
}
EWOK = {
    "agent-properties": 2210,
    "social-relations": 1548,
    "physical-relations": 818,
    "material-dynamics": 770,
    "physical-interactions": 556,
    "spatial-relations": 490,
    "social-properties": 328,
    "quantitative-properties": 314,
    "social-interactions": 294,
    "material-properties": 170,
    "physical-dynamics": 120,
}
_ET_REGULAR = {"regular_0_ops": 606, "regular_1_ops": 607, "regular_2_ops": 606, "regular_3_ops": 606}
ENTITY_TRACKING_FAST = _ET_REGULAR | {"regular_4_ops": 568, "regular_5_ops": 159}
ENTITY_TRACKING = ENTITY_TRACKING_FAST | {
    "ambiref_0_ops": 607,
    "ambiref_1_ops": 607,
    "ambiref_2_ops": 604,
    "ambiref_3_ops": 604,
    "ambiref_4_ops": 615,
    "ambiref_5_ops": 187,
    "move_contents_0_ops": 605,
    "move_contents_1_ops": 606,
    "move_contents_2_ops": 605,
    "move_contents_3_ops": 606,
    "move_contents_4_ops": 529,
    "move_contents_5_ops": 156,
}
COMPS = {"base": 49340, "wugs_dist_before": 13896, "wugs_dist_in_between": 13896, "wugs": 13896}
READING = {"reading": 1726}
WUG_ADJ, WUG_PAST = {"wug_adj": 200}, {"wug_past": 50}
GLUE = {"boolq": 1635, "mnli": 4908, "mrpc": 204, "multirc": 2424, "qqp": 20215, "rte": 139, "wsc": 52}
AOA_ROWS = 8005  # per revision
AOA_PATH = "AoA_word/surprisal.json"


@dataclasses.dataclass(frozen=True)
class Part:
    """One predictions file of a revision: its key in the submission, its folder under `zero_shot/<backend>/` (or
    under `finetune/`), the predictions each subtask must have (by the subtask's name in lower case), the fields
    each prediction needs, and what to call it in a message."""

    key: str
    folder: str
    sizes: dict[str, int]
    label: str
    fields: tuple[str, ...] = ("pred",)
    finetune: bool = False

    @property
    def path(self) -> str:
        """The file's path under the revision's `zero_shot/<backend>/` (or `finetune/`)."""
        return f"{self.folder}/predictions.json"


_READING = Part("reading", "reading", READING, "reading", ("pred", "prev_pred"))
FULL = [
    Part("blimp", "blimp/blimp_filtered", BLIMP, "BLiMP"),
    Part("blimp_supplement", "blimp/supplement_filtered", SUPPLEMENT, "BLiMP supplement"),
    Part("ewok", "ewok/ewok_filtered", EWOK, "EWoK"),
    Part("entity_tracking", "entity_tracking/entity_tracking", ENTITY_TRACKING, "entity tracking"),
    Part("wug_adj", "wug_adj/wug_adj_nominalization", WUG_ADJ, "wug adjective nominalization"),
    Part("wug_past", "wug_past/wug_past_tense", WUG_PAST, "wug past tense"),
    Part("comps", "comps/comps", COMPS, "COMPS"),
    _READING,
]
FINETUNE = [Part(task, task, {task: n}, f"{task} fine-tuning", finetune=True) for task, n in GLUE.items()]
FAST = [
    Part("blimp", "blimp/blimp_fast", dict.fromkeys(BLIMP, 200), "BLiMP fast"),
    Part("blimp_supplement", "blimp/supplement_fast", dict.fromkeys(SUPPLEMENT, 50), "BLiMP supplement fast"),
    Part("ewok", "ewok/ewok_fast", dict.fromkeys(EWOK, 100), "EWoK fast"),
    Part("entity_tracking", "entity_tracking/entity_tracking_fast", ENTITY_TRACKING_FAST, "entity tracking fast"),
    Part("wug_adj", "wug_adj/wug_adj_nominalization", WUG_ADJ, "wug adjective nominalization", ("pred", "prob")),
    Part("wug_past", "wug_past/wug_past_tense", WUG_PAST, "wug past tense", ("pred", "prob")),
    _READING,
]
# the fast data each fast metric reads, under --fast_eval_dir: BLiMP, the supplement and EWoK one file per subtask
FAST_DATA = {
    "blimp": "blimp_fast",
    "blimp_supplement": "supplement_fast",
    "ewok": "ewok_fast",
    "entity_tracking": "entity_tracking_fast/regular.jsonl",
    "wug_adj": "wug_adj_nominalization/wug_adj_nominalization.jsonl",
    "wug_past": "wug_past_tense/wug_past_tense.jsonl",
    "reading": "reading/reading_data.csv",
}
