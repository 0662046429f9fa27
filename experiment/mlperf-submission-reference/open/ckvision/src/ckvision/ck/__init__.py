"""Everything that faces Collective Knowledge: the ``ck`` CLI wrapper (:mod:`.tool`),
repository setup (:mod:`.setup`) and the hooks CK entries call (:mod:`.hooks`)."""
